"""The audit log.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_audit.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc

from swarmdeploy.storage.records import (
    AuditRecord,
    Page,
)


class AuditStore(abc.ABC):
    """The hash-chained audit log (issue 9, item 10)."""

    @abc.abstractmethod
    async def last_audit(self) -> AuditRecord | None:
        """The audit entry with the highest ``seq``, or ``None`` when the log is empty."""

    @abc.abstractmethod
    async def add_audit(self, entry: AuditRecord) -> None:
        """Append an entry. Raises :class:`Conflict` if its ``seq`` exists: the caller reads
        :meth:`last_audit`, chains the entry to it and retries on a conflict, so concurrent
        appenders (other replicas) keep the chain linear. Entries are never changed or
        deleted through this interface."""

    @abc.abstractmethod
    async def list_audit(self, *, page: int, per_page: int) -> Page[AuditRecord]:
        """Audit entries in ``seq`` order (oldest first)."""
