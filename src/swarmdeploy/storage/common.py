"""Helpers shared by every backend: paging checks, full-text words, tag normalisation,
request states.

Full-text semantics (the same in every backend, see ``docs/storage.md``): text is split into
words at every character that is not a letter or digit (``_`` separates too); matching is
case-insensitive and whole-word; a query matches when *every* word of it occurs (AND). A query
without any word matches everything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from swarmdeploy.storage.records import FINISHED_REQUEST_STATES, MAX_PER_PAGE

_WORD = re.compile(r"[^\W_]+")

#: Characters of a text that take part in full-text indexing (longer text is cut there).
FTS_MAX_CHARS = 100_000


_JSON = msgspec.json.Decoder()


def decode_json(text: str | bytes) -> Any:
    """A stored JSON column's value (the engines' ``json_deserializer``): msgspec, several
    times faster than :func:`json.loads` on the health documents of a targets page; a
    document msgspec refuses (``NaN``, which :func:`json.dumps` writes) goes to
    :func:`json.loads`, so every stored document reads as before."""
    try:
        return _JSON.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def fts_words(text: str) -> list[str]:
    """The distinct lower-case words of ``text`` in order of first occurrence."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text[:FTS_MAX_CHARS].lower()):
        seen.setdefault(word, None)
    return list(seen)


def check_page(page: int, per_page: int) -> int:
    """Validate paging arguments and return the row offset of ``page``.

    Raises :class:`ValueError` for ``page < 1`` or ``per_page`` outside 1..MAX_PER_PAGE
    (a programming error: the API validates its query parameters first).
    """
    if page < 1:
        raise ValueError(f"page must be >= 1, got {page}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be in 1..{MAX_PER_PAGE}, got {per_page}")
    return (page - 1) * per_page


def unique_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """``tags`` without duplicates, in order of first occurrence."""
    return tuple(dict.fromkeys(tags))


def chunked(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    """Consecutive slices of at most ``size`` items (bounds SQL bind-parameter counts)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def like_pattern(text: str) -> str:
    """A ``LIKE`` pattern (escape character ``\\``) matching ``text`` as a substring."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def check_final(state: str) -> None:
    """Raise :class:`ValueError` unless ``state`` is a final request state (a programming
    error: the manager finishes requests as ``acked``, ``refused`` or ``expired``)."""
    if state not in FINISHED_REQUEST_STATES:
        raise ValueError(f"{state!r} is not a final request state")
