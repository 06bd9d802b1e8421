"""SQL implementation of log storage: bulk ingest, queries, retention (both dialects)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from swarmdeploy.storage.common import fts_words
from swarmdeploy.storage.records import TERMINAL_TASK, LogQuery, LogRecord, Page
from swarmdeploy.storage.sql_core import SqlCore, as_page
from swarmdeploy.storage.tables import log_from_row, log_values, logs

#: Rows per INSERT statement (8 bind parameters each: well below every driver's limit).
LOG_CHUNK_ROWS = 1000

#: Rows deleted per transaction by ``purge_logs``.
PURGE_BATCH_ROWS = 5000


def _log_filters(query: LogQuery) -> list[sa.ColumnElement[bool]]:
    equal: list[tuple[sa.Column[Any], object]] = [
        (logs.c.target, query.target),
        (logs.c.task, query.task),
        (logs.c.stage, query.stage),
        (logs.c.command, query.command),
        (logs.c.error, query.error),
    ]
    where = [column == value for column, value in equal if value is not None]
    if query.since is not None:
        where.append(logs.c.time >= query.since)
    if query.until is not None:
        where.append(logs.c.time < query.until)
    if query.terminal_stages is not None:
        where.append(sa.or_(logs.c.task != TERMINAL_TASK, logs.c.stage.in_(query.terminal_stages)))
    return where


class SqlLogs(SqlCore):
    """Log lines."""

    async def add_logs(self, logs_in: Sequence[LogRecord]) -> int:
        """Insert in chunks of ``LOG_CHUNK_ROWS`` rows with ``ON CONFLICT DO NOTHING``; lines
        whose ``(target, seq)`` exists are skipped. Returns how many were stored."""
        stored = 0
        async with self._write_tx() as conn:
            for start in range(0, len(logs_in), LOG_CHUNK_ROWS):
                stored += await self._insert_logs(conn, logs_in[start : start + LOG_CHUNK_ROWS])
        return stored

    async def _insert_logs(self, conn: AsyncConnection, chunk: Sequence[LogRecord]) -> int:
        """Insert one chunk, skipping known ``(target, seq)``; returns the rows stored.

        SQLAlchemy's "insertmanyvalues" turns this executemany into multi-row ``VALUES``
        statements; ``RETURNING`` yields exactly the rows that were inserted.
        """
        statement = self._insert_ignore(logs).returning(logs.c.id)
        result = await conn.execute(statement, [log_values(log) for log in chunk])
        return len(result.all())

    async def query_logs(self, query: LogQuery) -> Page[LogRecord]:
        """Logs matching every filter of ``query``, sorted by its field, then by id."""
        statement = sa.select(logs).where(*_log_filters(query))
        words = fts_words(query.output or "")
        if words:
            statement = statement.where(self._log_text_match(words))
        columns = [logs.c[query.sort_by], logs.c.id]
        order = [c.desc() if query.sort_order == "desc" else c.asc() for c in columns]
        async with self._tx() as conn:
            total, rows = await self._page(conn, statement, order, query.page, query.per_page)
        return as_page(total, [log_from_row(r) for r in rows], query.page, query.per_page)

    async def purge_logs(
        self, *, older_than: int | None = None, keep_rows: int | None = None
    ) -> int:
        """Delete lines with ``time < older_than`` and all but the newest ``keep_rows`` lines
        (newest by ``(time, id)``). Returns how many were deleted.

        Deletes run in batches of ``PURGE_BATCH_ROWS``, one transaction each, so that log
        ingest is not blocked for the whole purge (SQLite has a single writer).
        """
        if keep_rows is not None and keep_rows < 0:
            raise ValueError(f"keep_rows must be >= 0, got {keep_rows}")
        deleted = 0
        if older_than is not None:
            deleted += await self._delete_batched(logs.c.time < older_than)
        if keep_rows is not None:
            cutoff_query = (
                sa.select(logs.c.time, logs.c.id)
                .order_by(logs.c.time.desc(), logs.c.id.desc())
                .offset(keep_rows)
                .limit(1)
            )
            async with self._tx() as conn:
                cutoff = (await conn.execute(cutoff_query)).first()
            if cutoff is not None:
                at, row_id = cutoff
                older = sa.or_(logs.c.time < at, sa.and_(logs.c.time == at, logs.c.id <= row_id))
                deleted += await self._delete_batched(older)
        return deleted

    async def _delete_batched(self, condition: sa.ColumnElement[bool]) -> int:
        deleted = 0
        batch = sa.select(logs.c.id).where(condition).limit(PURGE_BATCH_ROWS)
        while True:
            async with self._write_tx() as conn:
                result = await conn.execute(sa.delete(logs).where(logs.c.id.in_(batch)))
            deleted += int(result.rowcount)
            if result.rowcount < PURGE_BATCH_ROWS:
                return deleted

    async def max_log_seq(self, target_id: str) -> int:
        """The highest stored ``seq`` of the target, 0 if none: one descending step on the
        unique index ``(target, seq)``."""
        query = (
            sa.select(logs.c.seq)
            .where(logs.c.target == target_id, logs.c.seq.is_not(None))
            .order_by(logs.c.seq.desc())
            .limit(1)
        )
        async with self._tx() as conn:
            return int((await conn.execute(query)).scalar_one_or_none() or 0)

    async def count_logs(self) -> int:
        """Number of stored log lines."""
        async with self._tx() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count()).select_from(logs))).scalar_one()
            )
