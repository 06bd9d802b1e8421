"""The audit log of the in-memory storage (no awaits: every call is atomic with respect to
other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

import copy

from swarmdeploy.storage.common import check_page
from swarmdeploy.storage.errors import Conflict
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import AuditRecord, Page


class MemoryAudit:
    """The audit methods of ``MemoryStorage`` (a mixin): entries in ``seq`` order."""

    _state: StorageState
    _audit: list[AuditRecord]

    async def last_audit(self) -> AuditRecord | None:
        """The entry with the highest ``seq``, or ``None``."""
        require_open(self._state)
        return copy.deepcopy(self._audit[-1]) if self._audit else None

    async def add_audit(self, entry: AuditRecord) -> None:
        """Append it; ``Conflict`` if its ``seq`` exists (entries are kept in ``seq`` order)."""
        require_open(self._state)
        if any(e.seq == entry.seq for e in self._audit):
            raise Conflict(f"audit entry {entry.seq} exists")
        self._audit.append(copy.deepcopy(entry))
        self._audit.sort(key=lambda e: e.seq)

    async def list_audit(self, *, page: int, per_page: int) -> Page[AuditRecord]:
        """Entries in ``seq`` order."""
        require_open(self._state)
        offset = check_page(page, per_page)
        items = [copy.deepcopy(e) for e in self._audit[offset : offset + per_page]]
        return Page(total=len(self._audit), items=items, page=page, per_page=per_page)
