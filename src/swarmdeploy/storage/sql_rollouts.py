"""SQL implementation of staged rollouts (issue 15, shared by both dialects). The groups'
members are stored as one JSON document: they never change after the task is created."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.records import RollbackRecord, RolloutRecord
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import task_rollbacks, task_rollouts, tasks


def rollout_from_row(row: sa.Row[Any]) -> RolloutRecord:
    """Rebuild a :class:`RolloutRecord` from a ``task_rollouts`` row."""
    m = row._mapping
    groups = json.loads(m["groups"])
    return RolloutRecord(
        task_id=m["task_id"],
        groups=tuple(tuple(str(t) for t in g) for g in groups),
        state=m["state"],
        current=int(m["current_group"]),
        updated_at=m["updated_at"],
        reason=m["reason"],
        soak_until=m["soak_until"],
    )


class SqlRollouts(SqlCore):
    """Rollout rows of tasks, and the links of rollback tasks."""

    async def add_rollout(self, record: RolloutRecord) -> None:
        """Insert it; ``NotFound`` for an unknown task, ``Conflict`` for a second one."""
        async with self._write_tx() as conn:
            found = await conn.scalar(sa.select(tasks.c.id).where(tasks.c.id == record.task_id))
            if found is None:
                raise NotFound(f"task {record.task_id!r} not found")
            have = await conn.scalar(
                sa.select(task_rollouts.c.task_id).where(task_rollouts.c.task_id == record.task_id)
            )
            if have is not None:
                raise Conflict(f"task {record.task_id!r} has a rollout already")
            await conn.execute(
                sa.insert(task_rollouts).values(
                    task_id=record.task_id,
                    groups=json.dumps([list(g) for g in record.groups]),
                    state=record.state,
                    current_group=record.current,
                    reason=record.reason,
                    soak_until=record.soak_until,
                    updated_at=record.updated_at,
                )
            )

    async def get_rollout(self, task_id: str) -> RolloutRecord | None:
        """The rollout of the task or ``None``."""
        query = sa.select(task_rollouts).where(task_rollouts.c.task_id == task_id)
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else rollout_from_row(row)

    async def update_rollout(
        self,
        task_id: str,
        *,
        state: str,
        current: int,
        reason: str,
        soak_until: int | None,
        updated_at: int,
    ) -> RolloutRecord | None:
        """Set where the rollout stands; ``None`` when there is none."""
        async with self._write_tx() as conn:
            await conn.execute(
                sa.update(task_rollouts)
                .where(task_rollouts.c.task_id == task_id)
                .values(
                    state=state,
                    current_group=current,
                    reason=reason,
                    soak_until=soak_until,
                    updated_at=updated_at,
                )
            )
            query = sa.select(task_rollouts).where(task_rollouts.c.task_id == task_id)
            row = (await conn.execute(query)).first()
        return None if row is None else rollout_from_row(row)

    async def list_rollouts(self, states: Sequence[str]) -> list[RolloutRecord]:
        """Rollouts in one of ``states``, by task id."""
        query = (
            sa.select(task_rollouts)
            .where(task_rollouts.c.state.in_(list(states)))
            .order_by(task_rollouts.c.task_id)
        )
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
        return [rollout_from_row(r) for r in rows]

    async def add_rollback(self, record: RollbackRecord) -> None:
        """Insert the link; ``NotFound`` for an unknown rollback task, ``Conflict`` when it
        has one already."""
        async with self._write_tx() as conn:
            found = await conn.scalar(sa.select(tasks.c.id).where(tasks.c.id == record.task_id))
            if found is None:
                raise NotFound(f"task {record.task_id!r} not found")
            have = await conn.scalar(
                sa.select(task_rollbacks.c.task_id).where(
                    task_rollbacks.c.task_id == record.task_id
                )
            )
            if have is not None:
                raise Conflict(f"task {record.task_id!r} is a rollback already")
            await conn.execute(
                sa.insert(task_rollbacks).values(
                    task_id=record.task_id,
                    rollback_of=record.rollback_of,
                    created_at=record.created_at,
                )
            )

    async def rollback_links(self, task_id: str) -> list[RollbackRecord]:
        """Links naming the task either way, oldest first."""
        query = (
            sa.select(task_rollbacks)
            .where(
                sa.or_(task_rollbacks.c.task_id == task_id, task_rollbacks.c.rollback_of == task_id)
            )
            .order_by(task_rollbacks.c.created_at, task_rollbacks.c.task_id)
        )
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
        return [
            RollbackRecord(r._mapping["task_id"], r._mapping["rollback_of"],
                           r._mapping["created_at"])
            for r in rows
        ]  # fmt: skip
