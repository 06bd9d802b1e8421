"""Agent log batches stored exactly once (docs/protocol.md §6.7).

The manager stores a line only if its ``seq`` is exactly one more than the highest stored
``seq`` of that target: lines at or below it are duplicates (acknowledged again), lines above
a gap are dropped and come again. The answer ``log_ack{upto_seq}`` names the highest stored
``seq``. Storage keeps ``(target, seq)`` unique as a second guard.

The highest stored ``seq`` per target is cached in memory. The storage interface has no
"highest seq of a target" query, so the cache starts from the newest page of the target's
lines by time (an agent numbers lines in time order) and from the agent's own
``hello.log_acked_seq``: what the agent says the manager acknowledged was stored, even if
retention or a restored backup removed it since -- without that, an agent whose spool starts
above the manager's highest line would be stuck behind a gap forever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.protocol.messages import LogEntry
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import MAX_PER_PAGE, LogQuery, LogRecord


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """What to store from one ``log`` message, and the resulting acknowledgement."""

    records: list[LogRecord]
    upto_seq: int
    duplicates: int
    dropped: int


def select(target_id: str, highest: int, entries: Sequence[LogEntry]) -> Batch:
    """The contiguous run of ``entries`` that follows ``highest`` (pure)."""
    records: list[LogRecord] = []
    duplicates = dropped = 0
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.seq <= highest:
            duplicates += 1
        elif entry.seq == highest + 1:
            highest = entry.seq
            records.append(
                LogRecord(
                    time=entry.time_ms,
                    target=target_id,
                    task=entry.task,
                    stage=entry.stage,
                    command=entry.command,
                    output=entry.output,
                    error=entry.error,
                    seq=entry.seq,
                )
            )
        else:
            dropped += 1
    return Batch(records, highest, duplicates, dropped)


class LogSequencer:
    """Applies the seq rules of §6.7 per target and stores through :class:`LogService`."""

    def __init__(self, storage: Storage, logs: LogService) -> None:
        self._storage = storage
        self._logs = logs
        self._highest: dict[str, int] = {}

    async def highest(self, target_id: str, *, agent_acked: int = 0) -> int:
        """The highest stored ``seq`` of ``target_id`` (raised to ``agent_acked``)."""
        known = self._highest.get(target_id)
        if known is None:
            known = await self._stored_highest(target_id)
        known = max(known, agent_acked)
        self._highest[target_id] = known
        return known

    async def _stored_highest(self, target_id: str) -> int:
        page = await self._storage.query_logs(
            LogQuery(target=target_id, sort_by="time", sort_order="desc", per_page=MAX_PER_PAGE)
        )
        return max((r.seq for r in page.items if r.seq is not None), default=0)

    async def receive(self, target_id: str, entries: Sequence[LogEntry]) -> Batch:
        """Store the next contiguous lines of ``entries``; returns what happened. The cache
        moves on only after storage succeeded (a failure raises and nothing is acked)."""
        batch = select(target_id, await self.highest(target_id), entries)
        if batch.records:
            await self._logs.ingest(batch.records)
            self._highest[target_id] = batch.upto_seq
        return batch

    def forget(self, target_id: str) -> None:
        """Drop the cache of a revoked target."""
        self._highest.pop(target_id, None)
