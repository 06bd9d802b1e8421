"""SQL implementation of tasks and their per-target rows (shared by both dialects)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from swarmdeploy.storage.common import fts_words
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import Page, SortOrder, TaskRecord, TaskTargetRecord
from swarmdeploy.storage.sql_core import SqlCore, as_page
from swarmdeploy.storage.tables import (
    logs,
    task_from_row,
    task_target_from_row,
    task_targets,
    task_values,
    tasks,
)


class SqlTasks(SqlCore):
    """Tasks and per-target task states."""

    async def add_task(self, task: TaskRecord, targets: Sequence[TaskTargetRecord]) -> None:
        """Store a task and its per-target rows in one transaction; ``Conflict``."""
        rows = [
            {
                "task_id": task.id,
                "target_id": r.target_id,
                "role": r.role,
                "state": r.state,
                "updated_at": r.updated_at,
                "reason": r.reason,
            }
            for r in targets
        ]
        async with self._write_tx() as conn:
            await conn.execute(sa.insert(tasks).values(task_values(task)))
            if rows:
                await conn.execute(sa.insert(task_targets), rows)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        """The task, or ``None``."""
        async with self._tx() as conn:
            row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).first()
        return None if row is None else task_from_row(row)

    async def list_tasks(
        self,
        *,
        search: str | None = None,
        sort_order: SortOrder = "asc",
        page: int = 1,
        per_page: int = 100,
    ) -> Page[TaskRecord]:
        """Tasks by ``(created_at, id)``; ``search`` is full-text over the description."""
        query = sa.select(tasks)
        words = fts_words(search or "")
        if words:
            query = query.where(self._task_text_match(words))
        columns = [tasks.c.created_at, tasks.c.id]
        order = [c.desc() if sort_order == "desc" else c.asc() for c in columns]
        async with self._tx() as conn:
            total, rows = await self._page(conn, query, order, page, per_page)
        return as_page(total, [task_from_row(r) for r in rows], page, per_page)

    async def delete_task(self, task_id: str) -> None:
        """Delete the task, its per-target rows (cascade) and its logs; ``NotFound``."""
        async with self._write_tx() as conn:
            result = await conn.execute(sa.delete(tasks).where(tasks.c.id == task_id))
            if result.rowcount == 0:
                raise NotFound(f"task {task_id!r} not found")
            await conn.execute(sa.delete(logs).where(logs.c.task == task_id))

    async def mark_task_stopped(self, task_id: str, at: int) -> None:
        """Set ``stopped_at``; raises ``NotFound``."""
        statement = sa.update(tasks).where(tasks.c.id == task_id).values(stopped_at=at)
        async with self._write_tx() as conn:
            if (await conn.execute(statement)).rowcount == 0:
                raise NotFound(f"task {task_id!r} not found")

    async def task_targets(self, task_id: str) -> list[TaskTargetRecord]:
        """Rows of a task by (role, target_id): the build host first."""
        query = (
            sa.select(task_targets)
            .where(task_targets.c.task_id == task_id)
            .order_by(task_targets.c.role, task_targets.c.target_id)
        )
        async with self._tx() as conn:
            return [task_target_from_row(r) for r in (await conn.execute(query)).all()]

    async def target_tasks(
        self, target_id: str, *, states: Sequence[str] | None = None
    ) -> list[TaskTargetRecord]:
        """Rows of a target (optionally only in ``states``), newest task first."""
        query = (
            sa.select(task_targets)
            .join(tasks, tasks.c.id == task_targets.c.task_id)
            .where(task_targets.c.target_id == target_id)
            .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
        )
        if states is not None:
            query = query.where(task_targets.c.state.in_(list(states)))
        async with self._tx() as conn:
            return [task_target_from_row(r) for r in (await conn.execute(query)).all()]

    async def set_task_target_state(
        self,
        task_id: str,
        target_id: str,
        *,
        state: str,
        updated_at: int,
        reason: str = "",
        expected: Sequence[str] | None = None,
    ) -> bool:
        """Set one row's state; compare-and-set on ``expected`` in the same statement."""
        statement = (
            sa.update(task_targets)
            .where(task_targets.c.task_id == task_id, task_targets.c.target_id == target_id)
            .values(state=state, updated_at=updated_at, reason=reason)
        )
        if expected is not None:
            statement = statement.where(task_targets.c.state.in_(list(expected)))
        async with self._write_tx() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def expire_pending(
        self, *, now: int, states: Sequence[str], new_state: str
    ) -> list[TaskTargetRecord]:
        """Move rows in ``states`` of tasks that expired at or before ``now`` to ``new_state``."""
        if not states:
            return []
        expired = sa.select(tasks.c.id).where(tasks.c.expires_at <= now)
        statement = (
            sa.update(task_targets)
            .where(task_targets.c.state.in_(list(states)), task_targets.c.task_id.in_(expired))
            .values(state=new_state, updated_at=now)
            .returning(task_targets)
        )
        async with self._write_tx() as conn:
            rows = [task_target_from_row(r) for r in (await conn.execute(statement)).all()]
        return sorted(rows, key=lambda r: (r.task_id, r.target_id))
