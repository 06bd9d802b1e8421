"""Characters that must never reach an operator's terminal or a one-line record raw
(issue 9, item 2): C0 controls, DEL, C1 controls, and the Unicode format characters that
reorder or hide text (bidi embeddings, overrides and isolates, zero-width marks, line and
paragraph separators, BOM). Pure; shared by the manager (refusing such names at
registration) and the CLI (escaping every API string it prints).
"""

from __future__ import annotations

import re

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
#: The same without line feed (for multi-line text such as a PEM certificate).
UNSAFE_BUT_NEWLINE = re.compile(UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))


def escape_char(char: str) -> str:
    """A visible escape of one character: ``\\x1b``, ``\\u202e``."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_unsafe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every unsafe character replaced by :func:`escape_char`."""
    pattern = UNSAFE_BUT_NEWLINE if keep_newlines else UNSAFE
    return pattern.sub(lambda match: escape_char(match.group()), text)


def first_unsafe(text: str) -> str | None:
    """A description of the first unsafe character (``U+001B at index 2``), or ``None``."""
    match = UNSAFE.search(text)
    if match is None:
        return None
    return f"U+{ord(match.group()):04X} at index {match.start()}"
