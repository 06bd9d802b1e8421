"""The response collector: task output and stage markers to the manager (docs/protocol.md
§6.7, seed 003 "Response Collector").

* Stage markers (lines the agent writes about a task, command ``$agent``) and error lines
  (stderr) always enter the on-disk :class:`~swarmdeploy.agent.spool.LogSpool`; other output
  only when the task has ``debug: true``. Otherwise it stays in the bounded
  :class:`~swarmdeploy.agent.spool.RecentLines` ring until a ``log_request`` moves it to the
  spool (once: a repeated request never duplicates a line).
* While connected, :meth:`ResponseCollector.tick` sends one batch (``log``, in ``seq`` order)
  every ``batch_s`` and waits for its ``log_ack``; without an ack for ``resend_s`` it sends
  again from the last acknowledged ``seq``, then after twice as long each time while no ack
  comes (:class:`~swarmdeploy.agent.backoff.Backoff`: capped, with jitter). Every
  ``welcome`` re-aligns the spool with what the manager stored
  (``spool.ack(welcome.log_acked_seq)``) and restarts from there.
* The manager stores a line only if it continues its sequence, so re-sending is always safe.
* A line the spool cannot take (disk full, failing disk) is counted, never dropped silently:
  the next line that can be spooled is preceded by one ``$agent`` error line
  ``N lines lost: disk full`` (the daemon also retries it periodically, so the count
  arrives even when nothing else is written). Lines already spooled keep flowing meanwhile
  (:meth:`~swarmdeploy.agent.spool.LogSpool.ack` needs no free space).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from swarmdeploy.agent.backoff import Backoff
from swarmdeploy.agent.errors import SpoolError
from swarmdeploy.agent.fsutil import DiskReserve, is_no_space
from swarmdeploy.agent.output import LineSink, OutputLine, now_ms
from swarmdeploy.agent.reports import Send
from swarmdeploy.agent.spool import AGENT_COMMAND, LogEntry, LogSpool, RecentLines, SpooledEntry
from swarmdeploy.protocol.descriptor_common import MAX_COMMAND_CHARS
from swarmdeploy.protocol.messages import MAX_OUTPUT_CHARS, LogBatch
from swarmdeploy.protocol.messages import LogEntry as WireLogEntry

logger = logging.getLogger(__name__)

#: Upper bound of one batch's output text (the message limit is 1 MiB + 64 KiB).
MAX_BATCH_CHARS = 512 * 1024
_MAX_BATCH_LINES = 500
_STAGE_CHARS = 64


class ResponseCollector:
    """Routes output lines to the spool or the ring and sends spooled lines in batches."""

    def __init__(
        self,
        spool: LogSpool,
        ring: RecentLines,
        send: Send,
        *,
        batch_s: float,
        resend_s: float,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] | None = None,
        reserve: DiskReserve | None = None,
    ) -> None:
        self.spool = spool
        self._reserve = reserve
        self.ring = ring
        self._send = send
        self._batch_s = batch_s
        self._clock = clock
        self._inflight_upto = 0  # highest seq of the batch awaiting its log_ack (0: none)
        self._inflight = Backoff(resend_s, rng=rng)  # re-sends of the batch in flight
        self._last_batch = 0.0
        self._spool_failed = False
        self._lost = 0  # lines the spool could not take since the last lost-lines marker
        self._lost_why = ""
        self._lost_tasks: set[str] = set()

    @property
    def lost(self) -> int:
        """Lines not spooled yet to be reported in a lost-lines marker."""
        return self._lost

    def sink(self, task_id: str, stage: str, *, debug: bool) -> LineSink:
        """A line sink for the output of ``task_id`` in ``stage`` (``install``, ``run``...)."""

        def on_line(line: OutputLine) -> None:
            entry = LogEntry(line.time_ms, task_id, stage, line.command, line.text, line.error)
            if debug or line.error:
                self._append(entry, durable=line.error)
            else:
                self.ring.add(entry)

        return on_line

    def marker(self, task_id: str, stage: str, text: str, *, error: bool = False) -> None:
        """Spool a stage marker (always sent, synced to disk at once)."""
        self._append(LogEntry(now_ms(), task_id, stage, AGENT_COMMAND, text, error), durable=True)

    def _append(self, entry: LogEntry, *, durable: bool) -> None:
        if self._lost and not self.report_lost():
            self._count_lost(entry, None)
            return
        try:
            self.spool.append(entry, durable=durable)
        except SpoolError as exc:  # the disk is full or failing: keep running, count it
            self._count_lost(entry, exc)
            return
        self._spool_failed = False

    def _count_lost(self, entry: LogEntry, exc: SpoolError | None) -> None:
        if exc is not None and not self._lost:
            self._lost_why = "disk full" if is_no_space(exc) else "spool unusable"
        if exc is not None and not self._spool_failed:
            logger.error("log spool unusable, lines are counted as lost: %s", exc)
        self._spool_failed = True
        self._lost += 1
        self._lost_tasks.add(entry.task)

    def report_lost(self) -> bool:
        """Spool the ``N lines lost: <why>`` marker if lines were lost; True if none is
        left to report."""
        if not self._lost:
            return True
        task = next(iter(self._lost_tasks)) if len(self._lost_tasks) == 1 else ""
        text = f"{self._lost} lines lost: {self._lost_why}"
        marker = LogEntry(now_ms(), task, "agent", AGENT_COMMAND, text, True)
        try:
            self.spool.append(marker, durable=True)
        except SpoolError as exc:
            # The reserve is for exactly this (and the state): the gap must become visible.
            if not (is_no_space(exc) and self._reserve and self._reserve.release()):
                return False
            try:
                self.spool.append(marker, durable=True)
            except SpoolError:
                return False
        logger.warning("%s", text)
        self._lost, self._lost_tasks, self._spool_failed = 0, set(), False
        return True

    def on_log_request(self, since_ms: int) -> int:
        """Move the ring's lines from ``since_ms`` on into the spool; return how many."""
        lines = self.ring.drain()
        moved = 0
        for entry in lines:
            if entry.time_ms >= since_ms:
                self._append(entry, durable=False)
                moved += 1
            else:
                self.ring.add(entry)  # older than asked for: stays available
        self._last_batch = 0.0  # send them soon
        return moved

    def on_welcome(self, log_acked_seq: int) -> None:
        """A new connection: drop what the manager has, and re-send the rest from there."""
        self.spool.ack(log_acked_seq)
        self._inflight_upto = 0
        self._last_batch = 0.0

    def on_ack(self, upto_seq: int) -> None:
        """``log_ack``: drop the stored lines; the next batch may go at once."""
        self.spool.ack(upto_seq)
        if upto_seq >= self._inflight_upto:
            if self._inflight_upto and len(self.spool):
                self._last_batch = 0.0  # more is waiting: do not wait for the next period
            self._inflight_upto = 0

    async def tick(self, connected: bool) -> None:
        """Send the next batch if it is time (called periodically by the daemon)."""
        if not connected:
            return
        now = self._clock()
        if self._inflight_upto and not self._inflight.due(now):
            return  # waiting for the ack of the batch in flight
        if not self._inflight_upto and now - self._last_batch < self._batch_s:
            return
        self._last_batch = now
        batch = self._batch()
        if not batch:
            self._inflight_upto = 0
            return
        message = LogBatch(entries=[_wire(item) for item in batch])
        resend = bool(self._inflight_upto)
        if await self._send(message):
            if not resend:
                self._inflight.reset()  # a new batch: its first re-send after resend_s
            self._inflight_upto = batch[-1].seq
            self._inflight.sent(now)

    def _batch(self) -> list[SpooledEntry]:
        try:
            pending = self.spool.pending(self.spool.acked_seq, _MAX_BATCH_LINES)
        except SpoolError as exc:
            logger.error("cannot read the log spool: %s", exc)
            return []
        chars = 0
        for count, item in enumerate(pending):
            chars += len(item.entry.output) + len(item.entry.command)
            if chars > MAX_BATCH_CHARS and count:
                return pending[:count]
        return pending

    def flush(self) -> None:
        """Make everything spooled durable (at shutdown)."""
        try:
            self.spool.sync()
        except SpoolError as exc:
            logger.error("cannot sync the log spool: %s", exc)


def _wire(item: SpooledEntry) -> WireLogEntry:
    e = item.entry
    return WireLogEntry(
        seq=item.seq,
        time_ms=max(e.time_ms, 0),
        task=e.task,
        stage=e.stage[:_STAGE_CHARS],
        command=e.command[:MAX_COMMAND_CHARS],
        output=e.output[:MAX_OUTPUT_CHARS],
        error=e.error,
    )
