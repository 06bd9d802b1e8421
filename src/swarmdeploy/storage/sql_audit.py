"""SQL implementation of the audit log (shared by both dialects; issue 9, item 10)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.records import AuditRecord, Page
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import audit_log


def audit_from_row(row: sa.Row[Any]) -> AuditRecord:
    """Rebuild an :class:`AuditRecord` from an ``audit_log`` row."""
    m = row._mapping
    return AuditRecord(
        seq=m["seq"],
        at=m["at"],
        actor=m["actor"],
        action=m["action"],
        target=m["target"],
        details=json.loads(m["details"]),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


class SqlAudit(SqlCore):
    """Append-only audit entries; the ``seq`` primary key serialises concurrent appends."""

    async def last_audit(self) -> AuditRecord | None:
        """The entry with the highest ``seq``, or ``None``."""
        query = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else audit_from_row(row)

    async def add_audit(self, entry: AuditRecord) -> None:
        """Insert it; ``Conflict`` (translated) if its ``seq`` exists."""
        values = {
            "seq": entry.seq,
            "at": entry.at,
            "actor": entry.actor,
            "action": entry.action,
            "target": entry.target,
            "details": json.dumps(entry.details, sort_keys=True, ensure_ascii=False),
            "prev_hash": entry.prev_hash,
            "hash": entry.hash,
        }
        async with self._write_tx() as conn:
            await conn.execute(sa.insert(audit_log).values(values))

    async def list_audit(self, *, page: int, per_page: int) -> Page[AuditRecord]:
        """Entries in ``seq`` order."""
        async with self._tx() as conn:
            total, rows = await self._page(
                conn, sa.select(audit_log), [audit_log.c.seq], page, per_page
            )
        return Page(total, [audit_from_row(r) for r in rows], page, per_page)
