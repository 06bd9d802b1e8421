"""The audit log (issue 9, item 10): who did what to which target or task, kept apart from
task logs.

* **Append-only**: :meth:`AuditLog.append` is the only write; nothing deletes entries
  (deleting a task or target leaves them, log retention does not touch them).
* **Hash-chained** (``protocol.audit``): each entry carries the hash of the one before and
  its own hash over a canonical encoding, so a removed, inserted or edited entry breaks the
  chain; ``swarmdeploy audit verify`` recomputes it over ``GET /audit``.
* **Linear under concurrency**: appends of this process are serialised by a lock; appends
  of other replicas collide on the ``seq`` primary key (``Conflict``) and are retried on top
  of the new last entry.

Actions are dotted names (``task.stop``, ``terminal.command``, ``api_key.delete``); the
``details`` are JSON-able (strings are stored as given: readers escape them, the chain
covers their exact bytes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.protocol.audit import GENESIS, entry_hash
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict, StorageUnavailable
from swarmdeploy.storage.records import AuditRecord, Page

log = logging.getLogger(__name__)

#: How often an append is retried after another replica took the same ``seq``.
_MAX_ATTEMPTS = 20


def audit_json(entry: AuditRecord) -> dict[str, Any]:
    """An entry as ``GET /audit`` shows it (the fields ``protocol.audit`` verifies)."""
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "prevHash": entry.prev_hash,
        "hash": entry.hash,
    }


class AuditLog:
    """Appends to and reads the audit log (see the module docstring)."""

    def __init__(self, storage: Storage, *, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock
        self._lock = asyncio.Lock()

    async def append(
        self,
        actor: Principal | str,
        action: str,
        target: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one entry and return it (with its ``seq`` and hash). ``actor`` is the
        calling principal or a name such as ``manager``. Raises ``StorageError`` if it
        cannot be stored: callers act only after their audit entry is written."""
        name = actor.audit_name if isinstance(actor, Principal) else actor
        body = dict(details or {})
        async with self._lock:
            for _ in range(_MAX_ATTEMPTS):
                last = await self._storage.last_audit()
                entry = self._chain(last, name, action, target, body)
                try:
                    await self._storage.add_audit(entry)
                except Conflict:
                    continue  # another replica appended meanwhile: chain onto its entry
                log.info("audit #%d: %s %s %s", entry.seq, name, action, target or "-")
                return entry
        raise StorageUnavailable("the audit log stayed contended; try again")

    def _chain(
        self, last: AuditRecord | None, actor: str, action: str, target: str,
        details: dict[str, Any],
    ) -> AuditRecord:  # fmt: skip
        seq, prev = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
        at = self._clock()
        digest = entry_hash(seq=seq, at=at, actor=actor, action=action, target=target,
                            details=details, prev_hash=prev)  # fmt: skip
        return AuditRecord(seq, at, actor, action, target, details, prev, digest)

    async def page(self, *, page: int, per_page: int) -> Page[AuditRecord]:
        """Entries in ``seq`` order."""
        return await self._storage.list_audit(page=page, per_page=per_page)
