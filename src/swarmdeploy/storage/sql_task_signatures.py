"""SQL implementation of signed task manifests (shared by both dialects; ADR 0004)."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.records import TaskSignatureRecord
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import task_signatures


def task_signature_from_row(row: sa.Row[Any]) -> TaskSignatureRecord:
    """Rebuild a :class:`TaskSignatureRecord` from a ``task_signatures`` row."""
    m = row._mapping
    return TaskSignatureRecord(
        task_id=m["task_id"],
        kind=m["kind"],
        manifest=bytes(m["manifest"]),
        signature=bytes(m["signature"]),
        certificate=bytes(m["certificate"]),
        sequence=m["sequence"],
        key_id=m["key_id"],
        signed_at=m["signed_at"],
    )


class SqlTaskSignatures(SqlCore):
    """Signed task manifests; rows outlive their task (no foreign key)."""

    async def last_task_sequence(self) -> int:
        """The highest stored ``sequence`` (0 when none)."""
        query = sa.select(sa.func.coalesce(sa.func.max(task_signatures.c.sequence), 0))
        async with self._tx() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def add_task_signature(self, signature: TaskSignatureRecord) -> None:
        """Insert it; ``Conflict`` (translated) if ``(task_id, kind)`` or ``sequence`` exists."""
        async with self._write_tx() as conn:
            await conn.execute(sa.insert(task_signatures).values(dataclasses.asdict(signature)))

    async def get_task_signature(self, task_id: str, kind: str) -> TaskSignatureRecord | None:
        """The signed manifest or ``None``."""
        query = sa.select(task_signatures).where(
            task_signatures.c.task_id == task_id, task_signatures.c.kind == kind
        )
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else task_signature_from_row(row)
