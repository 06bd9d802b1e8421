"""SQL implementation of the agent link's state: requests to agents and upload progress
(shared by both dialects; docs/adr/0005-manager-link-state.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.common import check_final, chunked
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import (
    FINISHED_REQUEST_STATES,
    OPEN_REQUEST_STATES,
    BatchResult,
    RequestRecord,
    RequestState,
    UploadRecord,
    WriteBatch,
)
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import (
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
    (docs/adr/0011-live-deployments-and-group-commit.md)."""

    async def commit_batch(self, batch: WriteBatch) -> BatchResult:
        """Every write of ``batch`` in one transaction (see ``Storage.commit_batch``)."""
        changed: list[bool] = []
        stored: list[int] = []
        async with self._write_tx() as conn:
            for write in batch.states:
                statement = (
                    sa.update(task_targets)
                    .where(
                        task_targets.c.task_id == write.task_id,
                        task_targets.c.target_id == write.target_id,
                    )
                    .values(state=write.state, updated_at=write.updated_at, reason=write.reason)
                )
                if write.expected is not None:
                    statement = statement.where(task_targets.c.state.in_(list(write.expected)))
                changed.append(bool((await conn.execute(statement)).rowcount))
            for group in batch.logs:
                count = 0
                for start in range(0, len(group), LOG_BATCH_ROWS):
                    part = group[start : start + LOG_BATCH_ROWS]
                    insert = self._insert_ignore(logs).returning(logs.c.id)
                    result = await conn.execute(insert, [log_values(line) for line in part])
                    count += len(result.all())
                stored.append(count)
            for contact in batch.contacts:
                values: dict[str, Any] = {"last_seen_at": contact.seen_at}
                if contact.health is not None:
                    values["health"] = contact.health
                await conn.execute(
                    sa.update(targets).where(targets.c.id == contact.target_id).values(values)
                )
        return BatchResult(states=changed, logs=stored)
