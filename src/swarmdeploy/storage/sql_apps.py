"""SQL implementation of apps and standing releases (issue 14, shared by both dialects)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from swarmdeploy.protocol.selector import Selector
from swarmdeploy.storage.common import chunked
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import TaskAppRecord, TaskTargetRecord
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import target_tags, targets, task_apps, task_targets, tasks


def task_app_from_row(row: sa.Row[Any]) -> TaskAppRecord:
    """Rebuild a :class:`TaskAppRecord` from a ``task_apps`` row."""
    m = row._mapping
    return TaskAppRecord(
        task_id=m["task_id"],
        app=m["app"],
        created_at=m["created_at"],
        version=m["version"],
        selector=m["selector"],
        standing=bool(m["standing"]),
        remove=bool(m["remove"]),
    )


def selector_clause(selector: Selector) -> sa.ColumnElement[bool]:
    """A WHERE clause over ``targets`` admitting exactly the targets ``selector`` matches
    (:meth:`Selector.matches`); an empty selector admits every target."""
    clauses: list[sa.ColumnElement[bool]] = []

    def tagged(names: Sequence[str]) -> sa.Select[tuple[str]]:
        return sa.select(target_tags.c.target_id).where(target_tags.c.tag.in_(names))

    if selector.ids or selector.tags:
        clauses.append(
            sa.or_(targets.c.id.in_(selector.ids), targets.c.id.in_(tagged(selector.tags)))
        )
    if selector.all_tags:
        having_all = (
            tagged(selector.all_tags)
            .group_by(target_tags.c.target_id)
            .having(sa.func.count(sa.distinct(target_tags.c.tag)) == len(selector.all_tags))
        )
        clauses.append(targets.c.id.in_(having_all))
    if selector.not_tags:
        clauses.append(targets.c.id.not_in(tagged(selector.not_tags)))
    if selector.not_ids:
        clauses.append(targets.c.id.not_in(selector.not_ids))
    return sa.and_(sa.true(), *clauses)


class SqlApps(SqlCore):
    """App rows of tasks and rows added to stored tasks."""

    async def add_task_targets(self, task_id: str, targets: Sequence[TaskTargetRecord]) -> int:
        """Insert the rows of targets the task has not yet; ``NotFound`` for a task."""
        async with self._write_tx() as conn:
            found = await conn.scalar(sa.select(tasks.c.id).where(tasks.c.id == task_id))
            if found is None:
                raise NotFound(f"task {task_id!r} not found")
            have: set[str] = set()
            wanted = sorted({r.target_id for r in targets})
            for part in chunked(wanted, self.in_chunk):
                query = sa.select(task_targets.c.target_id).where(
                    task_targets.c.task_id == task_id, task_targets.c.target_id.in_(part)
                )
                have.update((await conn.scalars(query)).all())
            rows = [
                {
                    "task_id": task_id,
                    "target_id": r.target_id,
                    "role": r.role,
                    "state": r.state,
                    "updated_at": r.updated_at,
                    "reason": r.reason,
                }
                for r in targets
                if r.target_id not in have
            ]
            if rows:
                await conn.execute(sa.insert(task_targets), rows)
        return len(rows)

    async def add_task_app(self, record: TaskAppRecord) -> None:
        """Insert it; ``NotFound`` for an unknown task, ``Conflict`` (translated) for a
        second row."""
        async with self._write_tx() as conn:
            found = await conn.scalar(sa.select(tasks.c.id).where(tasks.c.id == record.task_id))
            if found is None:
                raise NotFound(f"task {record.task_id!r} not found")
            await conn.execute(sa.insert(task_apps).values(dataclasses.asdict(record)))

    async def get_task_app(self, task_id: str) -> TaskAppRecord | None:
        """The app row of the task or ``None``."""
        query = sa.select(task_apps).where(task_apps.c.task_id == task_id)
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else task_app_from_row(row)

    async def list_task_apps(
        self, *, app: str | None = None, standing: bool | None = None
    ) -> list[TaskAppRecord]:
        """App rows, newest first, optionally of one app and/or standing or not."""
        query = sa.select(task_apps).order_by(
            task_apps.c.created_at.desc(), task_apps.c.task_id.desc()
        )
        if app is not None:
            query = query.where(task_apps.c.app == app)
        if standing is not None:
            query = query.where(task_apps.c.standing == standing)
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
        return [task_app_from_row(r) for r in rows]
