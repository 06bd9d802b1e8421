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

What a device may write (issue 9, item 8): the manager, not the device, sets a line's
origin and time. A line is *refused* -- numbered and acknowledged like a stored one, so the
agent's spool moves on, but not stored -- when it claims the manager's origin (command
``$manager``) or names a task the device is not a target or build host of (only ``""``,
agent messages, and ``terminal`` are always allowed). Times after receipt are clamped to
the receipt time; line breaks in ``output`` and ``command`` are stored escaped (``\\n``), so
one record stays one line. Refusals are counted and logged once per batch.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Container, Sequence

from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.services.control import TERMINAL_TASK
from swarmdeploy.manager.services.logs import MANAGER_COMMAND, LogService
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol.messages import LogEntry
from swarmdeploy.protocol.text import escape_char
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import LogRecord

log = logging.getLogger(__name__)

#: Task memberships remembered per target (forgotten all at once beyond this).
_MAX_REMEMBERED_TASKS = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """What to store from one ``log`` message, and the resulting acknowledgement."""

    records: list[LogRecord]
    upto_seq: int
    duplicates: int
    dropped: int
    refused: int = 0


#: Tasks every device may write lines for: its own messages and its terminal.
ALWAYS_ALLOWED: frozenset[str] = frozenset({"", TERMINAL_TASK})
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (``\\n``): one record, one line."""
    return _LINE_BREAKS.sub(lambda match: escape_char(match.group()), text)


def _record(target_id: str, entry: LogEntry, received_ms: int) -> LogRecord:
    return LogRecord(
        time=min(entry.time_ms, received_ms),
        target=target_id,
        task=entry.task,
        stage=entry.stage,
        command=one_line(entry.command),
        output=one_line(entry.output),
        error=entry.error,
        seq=entry.seq,
    )


def select(
    target_id: str,
    highest: int,
    entries: Sequence[LogEntry],
    *,
    received_ms: int,
    tasks: Container[str] = ALWAYS_ALLOWED,
) -> Batch:
    """The contiguous run of ``entries`` that follows ``highest``, without the lines the
    device may not write (``tasks``: the tasks it is part of; see the module docstring)."""
    records: list[LogRecord] = []
    duplicates = dropped = refused = 0
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.seq <= highest:
            duplicates += 1
        elif entry.seq == highest + 1:
            highest = entry.seq
            if entry.command == MANAGER_COMMAND or entry.task not in tasks:
                refused += 1
            else:
                records.append(_record(target_id, entry, received_ms))
        else:
            dropped += 1
    return Batch(records, highest, duplicates, dropped, refused)


class LogSequencer:
    """Applies the seq rules of §6.7 per target and stores through :class:`LogService`."""

    def __init__(
        self, storage: Storage, logs: LogService, *, states: TaskStates | None = None
    ) -> None:
        self._storage = storage
        self._logs = logs
        self._states = states
        self._highest: dict[str, int] = {}
        self._tasks: dict[str, set[str]] = {}  # per target: tasks it was found part of

    async def highest(self, target_id: str, *, agent_acked: int = 0, refresh: bool = False) -> int:
        """The highest stored ``seq`` of ``target_id`` (raised to ``agent_acked``); read
        from storage when not cached or when ``refresh`` is set (at ``hello``)."""
        known = self._highest.get(target_id)
        if known is None or refresh:
            known = max(await self._storage.max_log_seq(target_id), known or 0)
        known = max(known, agent_acked)
        self._highest[target_id] = known
        return known

    async def receive(self, target_id: str, entries: Sequence[LogEntry], *, now: int) -> Batch:
        """Store the next contiguous lines of ``entries`` received at ``now``; returns what
        happened. The cache moves on only after storage succeeded (a failure raises and
        nothing is acked)."""
        tasks = await self._tasks_of(target_id, {e.task for e in entries})
        batch = select(target_id, await self.highest(target_id), entries, received_ms=now,
                       tasks=tasks)  # fmt: skip
        if batch.records:
            await self._logs.ingest(batch.records)
        if batch.refused:
            log.warning("refused %d log line(s) of %s: $manager origin or a task it is not "
                        "part of", batch.refused, target_id)  # fmt: skip
        self._highest[target_id] = batch.upto_seq
        return batch

    async def _tasks_of(self, target_id: str, named: set[str]) -> frozenset[str]:
        """The tasks of ``named`` that ``target_id`` may write lines for (membership is
        looked up once per target and task, then remembered)."""
        known = self._tasks.setdefault(target_id, set())
        for task_id in named - ALWAYS_ALLOWED - known:
            if await self._is_part(task_id, target_id):
                if len(known) >= _MAX_REMEMBERED_TASKS:
                    known.clear()
                known.add(task_id)
        return frozenset(known | (named & ALWAYS_ALLOWED))

    async def _is_part(self, task_id: str, target_id: str) -> bool:
        """Whether the target has a row in the task (a live deployment's row is in memory)."""
        if self._states is None:
            return await self._storage.get_task_target(task_id, target_id) is not None
        try:
            await self._states.row(task_id, target_id)
        except NotFoundError:
            return False
        return True

    def forget(self, target_id: str) -> None:
        """Drop the cache of a revoked target."""
        self._highest.pop(target_id, None)
        self._tasks.pop(target_id, None)
