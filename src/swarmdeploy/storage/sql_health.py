"""SQL implementation of the targets' health history (shared by both dialects)."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.records import HealthSample
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import health_samples, targets


def health_sample_from_row(row: sa.Row[Any]) -> HealthSample:
    """Rebuild a :class:`HealthSample` from a ``health_samples`` row."""
    m = row._mapping
    return HealthSample(**{f.name: m[f.name] for f in dataclasses.fields(HealthSample)})


class SqlHealth(SqlCore):
    """Health samples per target; deleted with the target (foreign key)."""

    async def add_health_sample(self, sample: HealthSample) -> None:
        """Store it; a second sample of the same target and millisecond is ignored, as is
        one of a target that no longer exists."""
        exists = sa.select(sa.literal(1)).where(
            health_samples.c.target_id == sample.target_id,
            health_samples.c.at_ms == sample.at_ms,
        )
        async with self._write_tx() as conn:
            if (await conn.execute(exists)).first() is not None:
                return
            known = sa.select(targets.c.id).where(targets.c.id == sample.target_id)
            if (await conn.execute(known)).first() is None:
                return
            await conn.execute(sa.insert(health_samples).values(dataclasses.asdict(sample)))

    async def health_samples(self, target_id: str, *, since: int, limit: int) -> list[HealthSample]:
        """The target's samples with ``at_ms >= since``, oldest first, at most ``limit``
        (the newest ones when there are more)."""
        query = (
            sa.select(health_samples)
            .where(health_samples.c.target_id == target_id, health_samples.c.at_ms >= since)
            .order_by(health_samples.c.at_ms.desc())
            .limit(limit)
        )
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
        return [health_sample_from_row(r) for r in reversed(rows)]

    async def purge_health_samples(self, *, older_than: int) -> int:
        """Delete samples with ``at_ms < older_than``; returns how many."""
        query = sa.delete(health_samples).where(health_samples.c.at_ms < older_than)
        async with self._write_tx() as conn:
            result = await conn.execute(query)
        return int(result.rowcount or 0)
