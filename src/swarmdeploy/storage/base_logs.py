"""Logs.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_logs.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swarmdeploy.storage.records import (
    LogQuery,
    LogRecord,
    Page,
)


class LogStore(abc.ABC):
    """Log lines of targets and tasks."""

    @abc.abstractmethod
    async def add_logs(self, logs: Sequence[LogRecord]) -> int:
        """Bulk insert. Lines whose (target, seq) is stored already are skipped. Returns the
        number of lines stored."""

    @abc.abstractmethod
    async def query_logs(self, query: LogQuery) -> Page[LogRecord]:
        """Logs matching ``query``."""

    @abc.abstractmethod
    async def purge_logs(
        self, *, older_than: int | None = None, keep_rows: int | None = None
    ) -> int:
        """Retention: delete logs with ``time < older_than`` and/or all but the newest
        ``keep_rows`` lines. Returns how many were deleted."""

    @abc.abstractmethod
    async def count_logs(self) -> int:
        """Number of stored log lines."""

    @abc.abstractmethod
    async def max_log_seq(self, target_id: str) -> int:
        """The highest stored ``seq`` of the target's lines, 0 if none (an index lookup on
        ``(target, seq)``)."""
