"""Agent log batches stored exactly once (docs/protocol.md §6.7).

The manager stores a line only if its ``seq`` is exactly one more than the highest stored
``seq`` of that target: lines at or below it are duplicates (acknowledged again), lines above
a gap are dropped and come again. The answer ``log_ack{upto_seq}`` names the highest stored
``seq``. Storage keeps ``(target, seq)`` unique as a second guard.

The highest stored ``seq`` per target is cached in memory. The cache starts from storage
(``Storage.max_log_seq``, an index lookup) and from the agent's own ``hello.log_acked_seq``:
what the agent says the manager acknowledged was stored, even if retention or a restored
backup removed it since -- without that, an agent whose spool starts above the manager's
highest line would be stuck behind a gap forever. The cache is refreshed from storage at
every ``hello`` (a target may have sent lines through another replica meanwhile; ADR 0005);
between ``hello``s one agent talks to one replica, whose worker for it is serial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.protocol.messages import LogEntry
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import LogRecord


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

    async def highest(self, target_id: str, *, agent_acked: int = 0, refresh: bool = False) -> int:
        """The highest stored ``seq`` of ``target_id`` (raised to ``agent_acked``); read
        from storage when not cached or when ``refresh`` is set (at ``hello``)."""
        known = self._highest.get(target_id)
        if known is None or refresh:
            known = max(await self._storage.max_log_seq(target_id), known or 0)
        known = max(known, agent_acked)
        self._highest[target_id] = known
        return known

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
