"""The audit log's hash chain (issue 9, item 10): canonical encoding and verification.

Pure functions, no I/O, shared by the manager (which appends) and the CLI (which verifies
``GET /audit`` pages: ``swarmdeploy audit verify``). Entry ``n`` stores ``prev_hash`` = the
``hash`` of entry ``n - 1`` (:data:`GENESIS` for entry 1) and its own ``hash`` =
SHA-256 of :func:`canonical` over every field but ``hash``. Removing, inserting, reordering
or editing an entry therefore breaks the chain at that entry; rewriting every later entry
too is detected only against a head (``seq``, ``hash``) noted elsewhere earlier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

#: ``prev_hash`` of the first entry.
GENESIS = "0" * 64
#: Version of the canonical encoding (part of every hash).
ENCODING_VERSION = 1


def canonical(
    *, seq: int, at: int, actor: str, action: str, target: str, details: Mapping[str, Any],
    prev_hash: str,
) -> bytes:  # fmt: skip
    """The bytes an entry's hash covers: sorted-key compact JSON, UTF-8, no NaN."""
    doc = {
        "v": ENCODING_VERSION,
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "details": dict(details),
        "prev": prev_hash,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip
    return text.encode("utf-8")


def entry_hash(
    *, seq: int, at: int, actor: str, action: str, target: str, details: Mapping[str, Any],
    prev_hash: str,
) -> str:  # fmt: skip
    """Hex SHA-256 of :func:`canonical`."""
    data = canonical(seq=seq, at=at, actor=actor, action=action, target=target,
                     details=details, prev_hash=prev_hash)  # fmt: skip
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first entry at which the chain does not hold, and why."""

    seq: int
    reason: str


@dataclasses.dataclass(slots=True)
class ChainChecker:
    """Checks entries in ``seq`` order, page by page (documents as ``GET /audit`` sends
    them: ``seq``, ``at``, ``actor``, ``action``, ``target``, ``details``, ``prevHash``,
    ``hash``). ``head`` is the last verified ``(seq, hash)``."""

    head: tuple[int, str] = (0, GENESIS)
    checked: int = 0

    def feed(self, entries: Iterable[Mapping[str, Any]]) -> ChainBreak | None:
        """Check the next entries; the first break found, or ``None``."""
        for doc in entries:
            problem = self._check(doc)
            if problem is not None:
                return problem
        return None

    def _check(self, doc: Mapping[str, Any]) -> ChainBreak | None:
        last_seq, last_hash = self.head
        try:
            seq = int(doc["seq"])
            fields = {k: doc[k] for k in ("at", "actor", "action", "target", "details")}
            prev, stored = str(doc["prevHash"]), str(doc["hash"])
            computed = entry_hash(seq=seq, prev_hash=prev, **fields)
        except (KeyError, TypeError, ValueError) as exc:
            return ChainBreak(last_seq + 1, f"malformed entry ({exc!r})")
        if seq != last_seq + 1:
            return ChainBreak(last_seq + 1, f"entry {last_seq + 1} is missing (next is {seq})")
        if prev != last_hash:
            return ChainBreak(seq, "prevHash does not match the hash of the entry before")
        if computed != stored:
            return ChainBreak(seq, "the entry was changed (its hash does not match)")
        self.head = (seq, stored)
        self.checked += 1
        return None
