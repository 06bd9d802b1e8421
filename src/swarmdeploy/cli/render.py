"""Output of CLI results: JSON exactly as the API sent it, or human-readable tables.

Every string that came from the API goes through :func:`safe` before it reaches the
terminal (issue 9, item 2): target names, tags, task descriptions and device output are
written by devices and other operators, and a raw ``ESC [2J`` / ``ESC ] 8`` / ``ESC ] 52``
would clear the screen, plant a hyperlink or write the clipboard. Tables and messages are
printed as :class:`rich.text.Text` (no markup is interpreted in them); JSON is printed with
every non-ASCII character escaped (the same document, still valid JSON).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from swarmdeploy.protocol.text import escape_unsafe


def safe(text: object, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with every control character shown as a visible escape (``\\x1b``,
    ``\\u202e``; ``protocol.text``): the one function every API string passes before the
    terminal."""
    return escape_unsafe(str(text), keep_newlines=keep_newlines)


def fmt_time(ms: object) -> str:
    """Milliseconds since the epoch as local ISO time (``-`` when absent)."""
    if not isinstance(ms, int | float) or ms <= 0:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def cell(value: object) -> str:
    """One table cell, escaped: lists joined, mappings compact, times left to the caller."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(safe(v) for v in value)
    if isinstance(value, dict):
        return safe(json.dumps(value, separators=(",", ":")))
    return safe(value)


def trust_label(target: dict[str, Any]) -> str:
    """What a target's agent trusts, for a table: ``verified``, ``FOREIGN CA`` (it will
    refuse every task this manager signs), ``INSECURE LAB``, ``NO ANCHOR`` or ``-``."""
    security = target.get("security")
    if not isinstance(security, dict):
        return "-"
    mode = security.get("mode")
    if mode == "verified":
        return "FOREIGN CA" if security.get("trustsThisManager") is False else "verified"
    return {"insecure_lab": "INSECURE LAB", "no_anchor": "NO ANCHOR"}.get(str(mode), "-")


class Renderer:
    """Prints documents either as JSON (``--output json``) or as tables."""

    def __init__(self, output: str, console: Console | None = None) -> None:
        self.as_json = output == "json"
        self.console = console or Console(soft_wrap=True)

    def json(self, doc: Any) -> None:
        """Print ``doc`` as JSON, non-ASCII escaped (nothing reaches the terminal raw)."""
        self.console.print_json(json.dumps(doc), ensure_ascii=True)

    def json_line(self, doc: Any) -> None:
        """Print ``doc`` as compact JSON on one line (a stream of documents, NDJSON)."""
        self.console.print(
            json.dumps(doc, ensure_ascii=True, separators=(",", ":")),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def document(self, doc: Any) -> None:
        """Print one API document (a mapping) as JSON or as key/value lines."""
        if self.as_json or not isinstance(doc, dict):
            self.json(doc) if doc is not None else None
            return
        table = Table(show_header=False, box=None)
        for key, value in doc.items():
            text = fmt_time(value) if key.endswith("At") else cell(value)
            table.add_row(Text(safe(key), style="bold"), Text(text))
        self.console.print(table)

    def pairs(self, rows: Sequence[tuple[str, str]]) -> None:
        """Print already escaped ``(label, text)`` rows as a two-column table."""
        table = Table(show_header=False, box=None)
        for label, text in rows:
            table.add_row(Text(label, style="bold"), Text(text))
        self.console.print(table)

    def listing(self, doc: Any, columns: Sequence[str]) -> None:
        """Print a list envelope ``{total, items, page, perPage}`` as a table."""
        if self.as_json:
            self.json(doc)
            return
        table = Table(*columns)
        for item in doc.get("items", []):
            row = []
            for col in columns:
                value = item.get(col)
                text = fmt_time(value) if col.endswith("At") or col == "time" else cell(value)
                row.append(Text(text))
            table.add_row(*row)
        self.console.print(table)
        self.message(
            f"page {doc.get('page')} of {doc.get('total')} item(s), {doc.get('perPage')} per page"
        )

    def message(self, text: str) -> None:
        """A short human message (suppressed in JSON mode, where documents speak); escaped,
        since messages quote API values."""
        if not self.as_json:
            self.line(text)

    def line(self, text: str) -> None:
        """Print one escaped line, whatever the output mode."""
        self.console.print(Text(safe(text)), highlight=False)
