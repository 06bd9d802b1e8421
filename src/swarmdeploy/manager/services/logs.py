"""Log ingestion (called by the transport) and queries (``GET /logs``).

Terminal output is shown to the operator who ran the command and to admins only
(``services/log_access.py``): queries take the caller, events carry the line's owner.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import operator
from collections.abc import Sequence
from typing import Any

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.group_commit import GroupCommit
from swarmdeploy.manager.services.log_access import LogAccess
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TERMINAL_TASK, LogQuery, LogRecord, Page

log = logging.getLogger(__name__)

MANAGER_COMMAND = "$manager"
#: A ``logs`` event carries at most about this many characters of lines (a batch of 1000
#: lines of 16 KiB is split), so that one event stays far below a subscriber's byte bound.
MAX_EVENT_CHARS = 256 << 10


def chunked(records: Sequence[LogRecord]) -> list[list[LogRecord]]:
    """``records`` in runs of at most :data:`MAX_EVENT_CHARS` characters (at least one)."""
    runs: list[list[LogRecord]] = [[]]
    size = 0
    for record in records:
        cost = len(record.output) + len(record.command) + 100
        if runs[-1] and size + cost > MAX_EVENT_CHARS:
            runs.append([])
            size = 0
        runs[-1].append(record)
        size += cost
    return runs


def log_json(record: LogRecord) -> dict[str, Any]:
    """A log line as the API and the ``logs`` event show it."""
    return {
        "time": record.time,
        "target": record.target,
        "task": record.task,
        "stage": record.stage,
        "command": record.command,
        "output": record.output,
        "error": record.error,
    }


class LogService:
    """Stores log lines, publishes them live, and answers queries."""

    def __init__(
        self,
        storage: Storage,
        *,
        events: EventHub,
        metrics: Metrics,
        clock: Clock,
        commits: GroupCommit | None = None,
    ) -> None:
        self._storage = storage
        self._commits = commits
        self._access = LogAccess(storage)
        self._events = events
        self._metrics = metrics
        self._clock = clock

    async def ingest(self, logs: Sequence[LogRecord]) -> int:
        """Store ``logs`` (lines already stored, same target and seq, are skipped) and
        publish them on the ``logs`` topic grouped by (target, task). Returns lines stored."""
        if not logs:
            return 0
        if self._commits is not None:  # an agent's batch: shares a transaction (group commit)
            stored = await self._commits.add_logs(logs)
        else:
            stored = await self._storage.add_logs(logs)
        self._metrics.count_logs(stored=stored, duplicates=len(logs) - stored)
        key = operator.attrgetter("target", "task")
        for (target, task), group in itertools.groupby(sorted(logs, key=key), key=key):
            for owner, lines in (await self._by_owner(task, list(group))).items():
                for run in chunked(lines):
                    payload = [log_json(r) for r in run]
                    self._events.publish("logs", payload, target=target, task=task, owner=owner)
        return stored

    async def _by_owner(
        self, task: str, lines: list[LogRecord]
    ) -> dict[str | None, list[LogRecord]]:
        """Terminal lines split by who may see them (their signing key's owner); other
        lines stay one group."""
        if task != TERMINAL_TASK:
            return {None: lines}
        groups: dict[str | None, list[LogRecord]] = {}
        for line in lines:
            owner = await self._access.owner_of_stage(task, line.stage)
            groups.setdefault(owner, []).append(line)
        return groups

    async def manager_line(
        self, target: str, task: str, output: str, *, stage: str = "", error: bool = False
    ) -> None:
        """Record and publish one ``$manager`` line (audit trail, manager-side events)."""
        await self.manager_lines([target], task, output, stage=stage, error=error)

    async def manager_lines(
        self,
        targets: Sequence[str],
        task: str,
        output: str,
        *,
        stage: str = "",
        error: bool = False,
    ) -> None:
        """Record and publish the same ``$manager`` line for several targets (one insert)."""
        now = self._clock()
        lines = [
            LogRecord(now, target, task, stage, MANAGER_COMMAND, output, error=error)
            for target in targets
        ]
        await self.ingest(lines)

    async def query(self, query: LogQuery, principal: Principal | None = None) -> Page[LogRecord]:
        """Stored logs matching ``query``, of which terminal output only as far as
        ``principal`` may see it (``services/log_access.py``; None: everything)."""
        if principal is not None:
            stages = await self._access.terminal_stages(principal)
            query = dataclasses.replace(query, terminal_stages=stages)
        return await self._storage.query_logs(query)

    async def enforce_retention(self, *, max_age_s: int, max_rows: int) -> int:
        """Delete logs older than ``max_age_s`` and beyond the newest ``max_rows`` (0: no
        limit). Returns how many lines were deleted."""
        older_than = self._clock() - max_age_s * 1000 if max_age_s else None
        keep_rows = max_rows or None
        if older_than is None and keep_rows is None:
            return 0
        deleted = await self._storage.purge_logs(older_than=older_than, keep_rows=keep_rows)
        if deleted:
            self._metrics.count_logs_expired(deleted)
            log.info("log retention deleted %d line(s)", deleted)
        return deleted
