"""SQL implementation of tasks and their per-target rows (shared by both dialects)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa

from swarmdeploy.storage.common import chunked, fts_words
from swarmdeploy.storage.errors import NotFound, StorageError
from swarmdeploy.storage.records import (
    Page,
    SortOrder,
    StateCount,
    TaskRecord,
    TaskTargetRecord,
)
from swarmdeploy.storage.sql_core import SqlCore, as_page
from swarmdeploy.storage.tables import (
    artifacts,
    logs,
    task_from_row,
    task_signatures,
    task_target_from_row,
    task_targets,
    task_values,
    tasks,
    uploads,
)

#: Distinct state names ``count_tasks_by_states`` can map to bits of a 64-bit sum.
_MAX_STATE_BITS = 62
#: Digests per ``referenced_digests`` statement: 3 bound parameters each stay below
#: SQLite's historical limit of 999.
_DIGESTS_PER_STATEMENT = 300
_HEX_RUN = re.compile(rb"[0-9a-f]{64,}")


def _direct_references(chunk: Sequence[str]) -> sa.CompoundSelect[tuple[str]]:
    """Which of ``chunk`` a task archive, an upload or an artifact record names (IN lists:
    ``artifacts.sha256`` is indexed, the others are read once per statement)."""
    return sa.union(
        sa.select(tasks.c.source_digest).where(tasks.c.source_digest.in_(chunk)),
        sa.select(uploads.c.sha256).where(uploads.c.sha256.in_(chunk)),
        sa.select(artifacts.c.sha256).where(artifacts.c.sha256.in_(chunk)),
    )


#: Signed manifests of live tasks without an archive or build of their own (``source.task``).
_REUSING_MANIFESTS = sa.select(task_signatures.c.manifest).join(
    tasks,
    sa.and_(
        tasks.c.id == task_signatures.c.task_id,
        tasks.c.source_digest.is_(None),
        tasks.c.build_host.is_(None),
    ),
)


def named_digests(data: bytes) -> set[str]:
    """Every 64-hex-digit string in ``data`` (each window of a longer run too): the digests
    a manifest may name, found in one pass whatever the number of digests asked about."""
    found: set[str] = set()
    for run in _HEX_RUN.findall(data):
        found.update(run[i : i + 64].decode() for i in range(len(run) - 63))
    return found


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
                "attempt": r.attempt,
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

    async def task_state_counts(self, task_ids: Sequence[str]) -> dict[str, list[StateCount]]:
        """Rows per (task, role, state) with the smallest target id (``GROUP BY`` on the
        primary key's leading column: no row is read into Python)."""
        found: dict[str, list[StateCount]] = {}
        async with self._tx() as conn:
            for part in chunked(sorted(set(task_ids)), self.in_chunk):
                query = (
                    sa.select(
                        task_targets.c.task_id,
                        task_targets.c.role,
                        task_targets.c.state,
                        sa.func.count(),
                        sa.func.min(task_targets.c.target_id),
                    )
                    .where(task_targets.c.task_id.in_(part))
                    .group_by(task_targets.c.task_id, task_targets.c.role, task_targets.c.state)
                )
                for task_id, role, state, count, first in (await conn.execute(query)).all():
                    found.setdefault(task_id, []).append(StateCount(role, state, count, first))
        for counts in found.values():
            counts.sort(key=lambda c: (c.role, c.first_target))
        return found

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

    async def recent_task_rows(
        self, target_ids: Sequence[str], *, per_target: int
    ) -> dict[str, list[TaskTargetRecord]]:
        """The ``per_target`` newest rows of each target (a window function: one query)."""
        if not target_ids or per_target < 1:
            return {}
        rank = (
            sa.func.row_number()
            .over(
                partition_by=task_targets.c.target_id,
                order_by=(tasks.c.created_at.desc(), tasks.c.id.desc()),
            )
            .label("rank")
        )
        ranked = (
            sa.select(task_targets, rank)
            .join(tasks, tasks.c.id == task_targets.c.task_id)
            .where(task_targets.c.target_id.in_(list(target_ids)))
            .subquery()
        )
        query = (
            sa.select(*(ranked.c[c.name] for c in task_targets.c))
            .where(ranked.c.rank <= per_target)
            .order_by(ranked.c.target_id, ranked.c.rank)
        )
        found: dict[str, list[TaskTargetRecord]] = {}
        async with self._tx() as conn:
            for row in (await conn.execute(query)).all():
                record = task_target_from_row(row)
                found.setdefault(record.target_id, []).append(record)
        return found

    async def get_task_target(self, task_id: str, target_id: str) -> TaskTargetRecord | None:
        """The row of ``target_id`` for ``task_id`` (primary-key lookup), or ``None``."""
        query = sa.select(task_targets).where(
            task_targets.c.task_id == task_id, task_targets.c.target_id == target_id
        )
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else task_target_from_row(row)

    async def count_task_targets_by_state(self) -> dict[str, int]:
        """Number of rows per state (``GROUP BY state``)."""
        query = sa.select(task_targets.c.state, sa.func.count()).group_by(task_targets.c.state)
        async with self._tx() as conn:
            return {state: int(n) for state, n in (await conn.execute(query)).all()}

    async def count_tasks_by_states(self) -> dict[frozenset[str], int]:
        """Tasks per set of distinct row states, computed in the database: each state name
        stands for one bit, a task's set is ``SUM(DISTINCT bit)`` over its rows, and tasks
        are counted per set. The answer has one row per distinct set, however many tasks."""
        async with self._tx() as conn:
            names = sorted((await conn.scalars(sa.select(task_targets.c.state).distinct())).all())
            total = (await conn.execute(sa.select(sa.func.count()).select_from(tasks))).scalar_one()
            if len(names) > _MAX_STATE_BITS:
                raise StorageError(f"{len(names)} distinct task states; at most {_MAX_STATE_BITS}")
            found: dict[frozenset[str], int] = {}
            if names:
                bit = sa.case(
                    *((task_targets.c.state == n, sa.literal(1 << i, sa.BigInteger))
                      for i, n in enumerate(names)),
                    else_=sa.literal(0, sa.BigInteger),
                )  # fmt: skip
                per_task = (
                    sa.select(sa.func.sum(sa.distinct(bit)).label("mask"))
                    .group_by(task_targets.c.task_id)
                    .subquery()
                )
                query = sa.select(per_task.c.mask, sa.func.count()).group_by(per_task.c.mask)
                for mask, count in (await conn.execute(query)).all():
                    states = frozenset(n for i, n in enumerate(names) if int(mask) >> i & 1)
                    found[states] = found.get(states, 0) + int(count)
        without_rows = int(total) - sum(found.values())
        if without_rows > 0:
            found[frozenset()] = found.get(frozenset(), 0) + without_rows
        return found

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

    async def retry_task_target(
        self, task_id: str, target_id: str, *, updated_at: int, expected: Sequence[str]
    ) -> TaskTargetRecord | None:
        """Back to ``pending`` with the next attempt, if the state is one of ``expected``."""
        statement = (
            sa.update(task_targets)
            .where(
                task_targets.c.task_id == task_id,
                task_targets.c.target_id == target_id,
                task_targets.c.state.in_(list(expected)),
            )
            .values(
                state="pending",
                updated_at=updated_at,
                reason="",
                attempt=task_targets.c.attempt + 1,
            )
            .returning(task_targets)
        )
        async with self._write_tx() as conn:
            row = (await conn.execute(statement)).first()
        return None if row is None else task_target_from_row(row)

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

    async def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` stored records need (one read transaction; see ``Storage``).
        The manifests of reusing tasks are read only while some digests are unreferenced."""
        wanted = sorted(set(digests))
        found: set[str] = set()
        if not wanted:
            return found
        async with self._tx() as conn:
            for start in range(0, len(wanted), _DIGESTS_PER_STATEMENT):
                chunk = wanted[start : start + _DIGESTS_PER_STATEMENT]
                found.update((await conn.execute(_direct_references(chunk))).scalars())
            remaining = set(wanted) - found
            if remaining:
                for manifest in (await conn.execute(_REUSING_MANIFESTS)).scalars():
                    found.update(remaining & named_digests(bytes(manifest)))
        return found
