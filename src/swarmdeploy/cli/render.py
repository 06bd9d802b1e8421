"""Output of CLI results: JSON exactly as the API sent it, or human-readable tables."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def fmt_time(ms: object) -> str:
    """Milliseconds since the epoch as local ISO time (``-`` when absent)."""
    if not isinstance(ms, int | float) or ms <= 0:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def cell(value: object) -> str:
    """One table cell: lists joined, mappings compact, times left to the caller."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


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

    def document(self, doc: Any) -> None:
        """Print one API document (a mapping) as JSON or as key/value lines."""
        if self.as_json or not isinstance(doc, dict):
            self.console.print_json(json.dumps(doc)) if doc is not None else None
            return
        table = Table(show_header=False, box=None)
        for key, value in doc.items():
            text = fmt_time(value) if key.endswith("At") else cell(value)
            table.add_row(f"[bold]{key}[/bold]", text)
        self.console.print(table)

    def listing(self, doc: Any, columns: Sequence[str]) -> None:
        """Print a list envelope ``{total, items, page, perPage}`` as a table."""
        if self.as_json:
            self.console.print_json(json.dumps(doc))
            return
        table = Table(*columns)
        for item in doc.get("items", []):
            row = []
            for col in columns:
                value = item.get(col)
                row.append(fmt_time(value) if col.endswith("At") or col == "time" else cell(value))
            table.add_row(*row)
        self.console.print(table)
        self.console.print(
            f"page {doc.get('page')} of {doc.get('total')} item(s), {doc.get('perPage')} per page"
        )

    def message(self, text: str) -> None:
        """A short human message (suppressed in JSON mode, where documents speak)."""
        if not self.as_json:
            self.console.print(text)
