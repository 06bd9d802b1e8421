"""SQL implementation of the agent link's state: requests to agents and upload progress
(shared by both dialects; docs/adr/0005-manager-link-state.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from swarmdeploy.storage.common import check_final, chunked
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import (
    FINISHED_REQUEST_STATES,
    OPEN_REQUEST_STATES,
    BatchResult,
    ContactWrite,
    HealthSample,
    LogRecord,
    RequestRecord,
    RequestState,
    StateWrite,
    UploadRecord,
    WriteBatch,
)
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import (
    health_samples,
    log_values,
    logs,
    request_from_row,
    request_values,
    requests,
    targets,
    task_targets,
    tasks,
    upload_from_row,
    upload_values,
    uploads,
)

_OPEN = list(OPEN_REQUEST_STATES)
#: Log rows per INSERT statement inside a batch (as ``sql_logs.LOG_CHUNK_ROWS``).
LOG_BATCH_ROWS = 1000
#: State writes per multi-row ``UPDATE`` inside a batch (6 parameters each).
STATE_BATCH_ROWS = 500


class _Full(Exception):
    """Raised inside ``add_request``'s transaction to roll it back when the bound is hit."""


def _open_of(target_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(requests.c.target_id == target_id, requests.c.state.in_(_OPEN))


class SqlRequests(SqlCore):
    """Requests to agents (docs/protocol.md §6.8)."""

    async def add_request(
        self,
        request: RequestRecord,
        *,
        max_open: int | None = None,
        counted_kinds: Sequence[str] | None = None,
        supersede: bool = False,
    ) -> bool:
        """Store a request in one transaction that first locks the target's row (PostgreSQL:
        ``FOR UPDATE``; SQLite has one writer), so the bound holds across replicas."""
        target_id = request.target_id
        lock = sa.select(targets.c.id).where(targets.c.id == target_id).with_for_update()
        try:
            async with self._write_tx() as conn:
                if (await conn.execute(lock)).first() is None:
                    raise NotFound(f"target {target_id!r} not found")
                if supersede:
                    same_kind = sa.and_(
                        requests.c.kind == request.kind, requests.c.state.in_(_OPEN)
                    )
                    await conn.execute(
                        sa.delete(requests).where(
                            requests.c.target_id == target_id,
                            sa.or_(requests.c.id == request.id, same_kind),
                        )
                    )
                if max_open is not None:
                    count = (
                        sa.select(sa.func.count()).select_from(requests).where(_open_of(target_id))
                    )
                    if counted_kinds is not None:
                        count = count.where(requests.c.kind.in_(list(counted_kinds)))
                    if (await conn.execute(count)).scalar_one() >= max_open:
                        raise _Full
                await conn.execute(sa.insert(requests).values(request_values(request)))
        except _Full:
            return False
        return True

    async def get_request(self, target_id: str, request_id: str) -> RequestRecord | None:
        """The request, or ``None``."""
        query = sa.select(requests).where(
            requests.c.target_id == target_id, requests.c.id == request_id
        )
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else request_from_row(row)

    async def open_requests(self, target_id: str) -> list[RequestRecord]:
        """Open requests of the target in storing order."""
        query = sa.select(requests).where(_open_of(target_id)).order_by(requests.c.seq)
        async with self._tx() as conn:
            return [request_from_row(r) for r in (await conn.execute(query)).all()]

    async def mark_requests_sent(self, target_id: str, request_ids: Sequence[str]) -> int:
        """``pending`` -> ``sent`` for these ids; returns how many changed."""
        changed = 0
        async with self._write_tx() as conn:
            for part in chunked(sorted(set(request_ids)), self.in_chunk):
                result = await conn.execute(
                    sa.update(requests)
                    .where(
                        requests.c.target_id == target_id,
                        requests.c.id.in_(part),
                        requests.c.state == "pending",
                    )
                    .values(state="sent")
                )
                changed += int(result.rowcount)
        return changed

    async def finish_request(
        self,
        target_id: str,
        request_id: str,
        *,
        state: RequestState,
        at: int,
        message: str = "",
    ) -> RequestRecord | None:
        """Open -> final ``state`` in one ``UPDATE ... WHERE state IN open RETURNING``."""
        check_final(state)
        statement = (
            sa.update(requests)
            .where(_open_of(target_id), requests.c.id == request_id)
            .values(state=state, acked_at=at, message=message)
            .returning(requests)
        )
        async with self._write_tx() as conn:
            row = (await conn.execute(statement)).first()
        return None if row is None else request_from_row(row)

    async def expire_requests(self, target_id: str, *, now: int) -> list[RequestRecord]:
        """Expire the target's open requests due at ``now``, in storing order."""
        statement = (
            sa.update(requests)
            .where(_open_of(target_id), requests.c.expires_at <= now)
            .values(state="expired", acked_at=now, message="expired")
            .returning(requests)
        )
        async with self._write_tx() as conn:
            rows = (await conn.execute(statement)).all()
        return [request_from_row(r) for r in sorted(rows, key=lambda r: r._mapping["seq"])]

    async def targets_with_expired_requests(self, *, now: int) -> list[str]:
        """Targets with open requests due at ``now``, sorted."""
        query = (
            sa.select(requests.c.target_id)
            .where(requests.c.expires_at <= now, requests.c.state.in_(_OPEN))
            .distinct()
            .order_by(requests.c.target_id)
        )
        async with self._tx() as conn:
            return list((await conn.scalars(query)).all())

    async def delete_requests(self, target_id: str) -> int:
        """Delete every request of the target."""
        async with self._write_tx() as conn:
            result = await conn.execute(
                sa.delete(requests).where(requests.c.target_id == target_id)
            )
        return int(result.rowcount)

    async def purge_requests(self, *, older_than: int) -> int:
        """Delete finished requests with ``acked_at < older_than``."""
        statement = sa.delete(requests).where(
            requests.c.state.in_(list(FINISHED_REQUEST_STATES)), requests.c.acked_at < older_than
        )
        async with self._write_tx() as conn:
            return int((await conn.execute(statement)).rowcount)


def _upload_key(task_id: str, sha256: str) -> sa.ColumnElement[bool]:
    return sa.and_(uploads.c.task_id == task_id, uploads.c.sha256 == sha256)


class SqlUploads(SqlCore):
    """Progress of build-artifact uploads (docs/protocol.md §6.6)."""

    async def start_upload(self, upload: UploadRecord) -> None:
        """Replace the record of ``(task_id, sha256)`` in one transaction; ``NotFound``."""
        exists = sa.select(tasks.c.id).where(tasks.c.id == upload.task_id)
        async with self._write_tx() as conn:
            if (await conn.execute(exists)).first() is None:
                raise NotFound(f"task {upload.task_id!r} not found")
            await conn.execute(sa.delete(uploads).where(_upload_key(upload.task_id, upload.sha256)))
            await conn.execute(sa.insert(uploads).values(upload_values(upload)))

    async def get_upload(self, task_id: str, sha256: str) -> UploadRecord | None:
        """The upload record, or ``None``."""
        async with self._tx() as conn:
            row = (
                await conn.execute(sa.select(uploads).where(_upload_key(task_id, sha256)))
            ).first()
        return None if row is None else upload_from_row(row)

    async def list_uploads(self, task_id: str) -> list[UploadRecord]:
        """The task's upload records by ``(name, sha256)``."""
        query = (
            sa.select(uploads)
            .where(uploads.c.task_id == task_id)
            .order_by(uploads.c.name, uploads.c.sha256)
        )
        async with self._tx() as conn:
            return [upload_from_row(r) for r in (await conn.execute(query)).all()]

    async def advance_upload(
        self,
        task_id: str,
        sha256: str,
        *,
        expected_next: int,
        next_index: int,
        complete: bool = False,
    ) -> bool:
        """Compare-and-set of the progress in one ``UPDATE``."""
        statement = (
            sa.update(uploads)
            .where(
                _upload_key(task_id, sha256),
                uploads.c.next_index == expected_next,
                uploads.c.complete.is_(False),
            )
            .values(next_index=next_index, complete=complete)
        )
        async with self._write_tx() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def delete_upload(self, task_id: str, sha256: str) -> bool:
        """Delete one upload record."""
        async with self._write_tx() as conn:
            result = await conn.execute(sa.delete(uploads).where(_upload_key(task_id, sha256)))
        return bool(result.rowcount)


class SqlWriteBatch(SqlCore):
    """Group commit: the link's writes of many agents in one transaction
    (docs/adr/0011-live-deployments-and-group-commit.md).

    The statements are built once (bound parameters), so a write costs its execution, not
    the building and compiling of a statement; contact updates are one ``executemany`` per
    batch (one per target, the newest), log lines and health samples one multi-row
    ``INSERT`` each."""

    async def commit_batch(self, batch: WriteBatch) -> BatchResult:
        """Every write of ``batch`` in one transaction (see ``Storage.commit_batch``)."""
        async with self._write_tx() as conn:
            changed = await self._set_states(conn, batch.states)
            stored = await self._store_log_groups(conn, batch.logs)
            await self._store_contacts(conn, batch.contacts)
        return BatchResult(states=changed, logs=stored)

    async def _set_states(self, conn: AsyncConnection, writes: Sequence[StateWrite]) -> list[bool]:
        """Compare-and-set every row: one ``UPDATE ... FROM (VALUES ...) RETURNING`` per
        :data:`STATE_BATCH_ROWS` when each write expects one state and names another row
        (the link's writes); else one statement per write, in order."""
        keys = [(w.task_id, w.target_id) for w in writes]
        plain = all(w.expected is not None and len(w.expected) == 1 for w in writes)
        if len(writes) < 2 or not plain or len(set(keys)) != len(keys):
            return [await self._set_state(conn, write) for write in writes]
        changed: set[tuple[str, str]] = set()
        for start in range(0, len(writes), STATE_BATCH_ROWS):
            part = writes[start : start + STATE_BATCH_ROWS]
            rows = _padded(len(part))
            sql = _set_states_sql(conn.dialect, rows)
            params = tuple(
                value
                for w in part
                for value in (
                    w.task_id,
                    w.target_id,
                    w.state,
                    w.updated_at,
                    w.reason,
                    w.expected[0] if w.expected else "",
                )
            ) + _NO_ROW * (rows - len(part))
            result = await conn.exec_driver_sql(sql, params)
            changed.update((task_id, target_id) for task_id, target_id in result.all())
        return [key in changed for key in keys]

    @staticmethod
    async def _set_state(conn: AsyncConnection, write: StateWrite) -> bool:
        params: dict[str, Any] = {
            "b_task": write.task_id,
            "b_target": write.target_id,
            "b_state": write.state,
            "b_at": write.updated_at,
            "b_reason": write.reason,
        }
        statement = _SET_STATE
        if write.expected is not None:
            statement = _SET_STATE_IF
            params["b_expected"] = list(write.expected)
        return bool((await conn.execute(statement, params)).rowcount)

    async def _store_log_groups(
        self, conn: AsyncConnection, groups: Sequence[Sequence[LogRecord]]
    ) -> list[int]:
        """Every group's lines in one multi-row ``INSERT`` (lines already stored, or
        repeated in the batch, are skipped); how many lines of each group were stored."""
        first: dict[tuple[str, int], int] = {}  # (target, seq) -> index of its first group
        rows: list[dict[str, Any]] = []
        for index, group in enumerate(groups):
            for line in group:
                if line.seq is None:  # no key to count it by: the statement per group
                    return await self._store_log_groups_one_by_one(conn, groups)
                if first.setdefault((line.target, line.seq), index) == index:
                    rows.append(log_values(line))
        counts = [0] * len(groups)
        insert = self._insert_ignore(logs).returning(logs.c.target, logs.c.seq)
        for start in range(0, len(rows), LOG_BATCH_ROWS):
            result = await conn.execute(insert, rows[start : start + LOG_BATCH_ROWS])
            for target, seq in result.all():
                counts[first[(target, seq)]] += 1
        return counts

    async def _store_log_groups_one_by_one(
        self, conn: AsyncConnection, groups: Sequence[Sequence[LogRecord]]
    ) -> list[int]:
        stored = []
        for group in groups:
            count = 0
            for start in range(0, len(group), LOG_BATCH_ROWS):
                part = group[start : start + LOG_BATCH_ROWS]
                insert = self._insert_ignore(logs).returning(logs.c.id)
                result = await conn.execute(insert, [log_values(line) for line in part])
                count += len(result.all())
            stored.append(count)
        return stored

    async def _store_contacts(
        self, conn: AsyncConnection, contacts: Sequence[ContactWrite]
    ) -> None:
        """One row update per target (its newest time and newest health document), and
        the health samples of targets that exist (others are ignored)."""
        seen: dict[str, int] = {}
        health: dict[str, dict[str, Any]] = {}
        samples: list[HealthSample] = []
        for contact in contacts:
            seen[contact.target_id] = max(contact.seen_at, seen.get(contact.target_id, 0))
            if contact.health is not None:
                health[contact.target_id] = contact.health
            if contact.sample is not None:
                samples.append(contact.sample)
        plain = [{"b_id": t, "b_seen": at} for t, at in seen.items() if t not in health]
        full = [{"b_id": t, "b_seen": seen[t], "b_health": doc} for t, doc in health.items()]
        for statement, params in ((_TOUCH, plain), (_TOUCH_HEALTH, full)):
            if params:
                await conn.execute(statement, params)
        if samples:
            await self._store_samples(conn, samples)

    async def _store_samples(self, conn: AsyncConnection, samples: list[HealthSample]) -> None:
        ids = sorted({s.target_id for s in samples})
        known: set[str] = set()
        for part in chunked(ids, self.in_chunk):
            query = sa.select(targets.c.id).where(targets.c.id.in_(part))
            known.update((await conn.execute(query)).scalars())
        rows = [dataclasses.asdict(s) for s in samples if s.target_id in known]
        if rows:
            await conn.execute(self._insert_ignore(health_samples), rows)


#: The parameters of a padding row: no row has an empty task id, so it changes nothing.
_NO_ROW: tuple[str | int, ...] = ("", "", "", 0, "", "")


def _padded(rows: int) -> int:
    """``rows`` rounded up to a power of two (at most :data:`STATE_BATCH_ROWS`): the batch
    is padded with rows that match nothing, so a handful of statements are ever compiled."""
    return min(STATE_BATCH_ROWS, 1 << max(0, rows - 1).bit_length())


#: The compiled text of :func:`_set_states_statement` per (dialect, paramstyle, rows).
_SET_STATES_SQL: dict[tuple[str, str, int], str] = {}


def _set_states_sql(dialect: sa.Dialect, rows: int) -> str:
    """The driver-level SQL of a compare-and-set of ``rows`` rows, compiled once per
    (padded, :func:`_padded`) row count: SQLAlchemy does not cache a ``VALUES`` list with
    data, and compiling it again for every batch was the largest single cost of the group
    commit on the event loop (docs/performance.md, "third round"). Its parameters are
    positional, six per row in the order of :func:`_set_states_statement`."""
    key = (dialect.name, str(dialect.paramstyle), rows)
    sql = _SET_STATES_SQL.get(key)
    if sql is None:
        model = [StateWrite("", "", "", 0, "", ("",))] * rows
        compiled = _set_states_statement(model).compile(dialect=dialect)
        order = list(compiled.positiontup or [])
        if len(order) != 6 * rows:  # a dialect that names its parameters: not expected
            raise RuntimeError(f"{dialect.name}: the state batch is not positional")
        sql = _SET_STATES_SQL[key] = compiled.string
    return sql


def _set_states_statement(writes: Sequence[StateWrite]) -> sa.Update:
    """One compare-and-set of many rows (each write expects exactly one state)."""
    rows = []
    for w in writes:
        assert w.expected is not None and len(w.expected) == 1
        rows.append((w.task_id, w.target_id, w.state, w.updated_at, w.reason, w.expected[0]))
    v = (
        sa.values(
            sa.column("v_task", sa.String),
            sa.column("v_target", sa.String),
            sa.column("v_state", sa.String),
            sa.column("v_at", sa.BigInteger),
            sa.column("v_reason", sa.Text),
            sa.column("v_expected", sa.String),
            name="v",
        )
        .data(rows)
        .cte("v")
    )
    return (
        sa.update(task_targets)
        .where(
            task_targets.c.task_id == v.c.v_task,
            task_targets.c.target_id == v.c.v_target,
            task_targets.c.state == v.c.v_expected,
        )
        .values(state=v.c.v_state, updated_at=v.c.v_at, reason=v.c.v_reason)
        .returning(task_targets.c.task_id, task_targets.c.target_id)
    )


_STATE_ROW = sa.and_(
    task_targets.c.task_id == sa.bindparam("b_task"),
    task_targets.c.target_id == sa.bindparam("b_target"),
)
_SET_STATE = (
    sa.update(task_targets)
    .where(_STATE_ROW)
    .values(
        state=sa.bindparam("b_state"),
        updated_at=sa.bindparam("b_at"),
        reason=sa.bindparam("b_reason"),
    )
)
_SET_STATE_IF = _SET_STATE.where(
    task_targets.c.state.in_(sa.bindparam("b_expected", expanding=True))
)
_TOUCH = (
    sa.update(targets)
    .where(targets.c.id == sa.bindparam("b_id"))
    .values(last_seen_at=sa.bindparam("b_seen"))
)
_TOUCH_HEALTH = _TOUCH.values(health=sa.bindparam("b_health", type_=targets.c.health.type))
