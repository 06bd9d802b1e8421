"""One serial worker per target: jobs of one target run in order, targets run concurrently.

Everything the link does for a target -- handling its messages, announcing a new task to it,
delivering a request -- is a job on that target's queue. Serial per target keeps the protocol
simple (an ``accepted`` report is handled after the ``announce`` that caused it was recorded);
concurrent across targets keeps one slow database round trip from stalling the fleet. A
worker task exists only while its queue has jobs. Queues are bounded: a full queue refuses a
job (the protocol's acknowledgements make the agent send again).

A job may carry a ``key`` (an agent's message that the agent re-sends until answered: its
type and encoded content, :func:`message_key`). An exact re-send is answered once:

* a copy whose key is **waiting** in the queue is merged into that job (the one answer
  answers every copy);
* when the manager is **behind** -- the original waited ``late_s`` or more from its arrival
  until its job ended -- a copy that arrived while the job ran, or arrives within
  ``served_s`` after it was served, is dropped: the answer is on its way, and the agent
  re-sent only because it was late. When the manager is not behind, such a copy is served
  again (the agent's answer may have been lost). A ``hello`` of the target ends this
  memory (:meth:`TargetWorkers.forget_served`): after a reconnect the agent re-sends what
  it lost with the connection, and every copy is served again.

A job's outcome says what its copies get: ``True`` served (remembered as above), ``None``
answered with something that may change (a refusal: not remembered), ``False`` or an
exception not served (storage unavailable, the answer not handed to the connection). Nothing
is lost when the first job fails: one of the copies merged into it is queued again as a job
of its own.

A waiting job may also take in a later message (:meth:`TargetWorkers.join_tail`): the state
reports of one agent that arrive together become one job (``handlers.ReportGroup``). Only
the last job of the queue can take a message in, so no message overtakes another.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

import msgspec

from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.protocol import messages as m

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]
#: How long an answered message's copies are dropped (a little over the agents' first
#: re-send wait of 10 s, docs/protocol.md §6.4).
SERVED_S = 15.0
#: A message that waited this long from its arrival until its job ended was answered late.
LATE_S = 1.0
#: Messages that are re-sent until answered and whose copies are merged or dropped.
_KEYED = (m.StateReport, m.FetchTask, m.ChunkRequest, m.LogBatch, m.RequestAck)


def message_key(msg: msgspec.Struct) -> Hashable | None:
    """The merge key of an agent's message: its type and its encoded content (an exact
    re-send has the same key; anything that differs, e.g. a report's time, does not).
    ``None`` for messages that are not re-sent copies (``hello``, heartbeats, health)."""
    if not isinstance(msg, _KEYED):
        return None
    return (type(msg).__name__, msgspec.msgpack.encode(msg))


@dataclasses.dataclass(slots=True)
class _Entry:
    """A queued or running job: its keys, when it was queued, and a copy that arrived
    while it waited (``copy``) or ran (``copy_running``)."""

    job: Job
    keys: list[Hashable]
    queued: float
    copy: Job | None = None
    copy_running: Job | None = None


class TargetWorkers:
    """Per-target job queues (see the module docstring). Single event loop."""

    def __init__(
        self,
        *,
        max_queued: int,
        metrics: Metrics | None = None,
        served_s: float = SERVED_S,
        late_s: float = LATE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self._max = max_queued
        self._metrics = metrics
        self._served_s = served_s
        self._late_s = late_s
        self._clock = clock
        self._queues: dict[str, collections.deque[_Entry]] = {}
        #: per target: the key of every queued or running job -> its entry
        self._keys: dict[str, dict[Hashable, _Entry]] = {}
        #: per target: keys served recently -> when (``clock``)
        self._served: dict[str, dict[Hashable, float]] = {}
        self._running: dict[str, _Entry] = {}
        self.merged = 0
        self.dropped = 0
        self._queued_total = 0
        self._latency_s = 0.0
        self._ended = float("-inf")
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, target_id: str, job: Job, *, key: Hashable | None = None) -> bool:
        """Queue ``job`` for ``target_id``; ``False`` when its queue is full or closed. A job
        whose ``key`` is queued, running or was just served is not queued (``True``; see the
        module docstring)."""
        if self._closed:
            return False
        if key is not None and self._absorbed(target_id, job, key):
            return True
        queue = self._queues.setdefault(target_id, collections.deque())
        if len(queue) - (target_id in self._running) >= self._max:
            log.warning("work queue of %s is full; dropped a job", target_id)
            if self._metrics is not None:
                self._metrics.link_refused.inc()
            return False
        entry = _Entry(job, [] if key is None else [key], self._clock())
        queue.append(entry)
        self._queued_total += 1
        if key is not None:
            self._keys.setdefault(target_id, {})[key] = entry
        if target_id not in self._tasks:
            self._idle.clear()
            self._tasks[target_id] = asyncio.create_task(
                self._run(target_id), name=f"link:{target_id}"
            )
        return True

    def _absorbed(self, target_id: str, job: Job, key: Hashable) -> bool:
        """Whether a copy of ``key`` is queued, running or just served (then count it)."""
        entry = self._keys.get(target_id, {}).get(key)
        if entry is not None:
            if self._running.get(target_id) is entry:
                entry.copy_running = entry.copy_running or job
            else:
                entry.copy = entry.copy or job
            self.merged += 1
            if self._metrics is not None:
                self._metrics.link_merged.inc()
            return True
        served = self._served.get(target_id)
        if served is not None:
            at = served.get(key)
            if at is not None and self._clock() - at < self._served_s:
                self.dropped += 1
                if self._metrics is not None:
                    self._metrics.link_merged.inc()
                return True
        return False

    def join_tail(self, target_id: str, key: Hashable | None, take: Callable[[Job], bool]) -> bool:
        """Offer a message to the last waiting (not running) job of ``target_id``: ``take``
        gets that job and returns whether it took the message in. ``True`` if it did (the
        message's ``key`` then counts as queued with that job)."""
        queue = self._queues.get(target_id)
        if not queue or self._closed:
            return False
        entry = queue[-1]
        if self._running.get(target_id) is entry or not take(entry.job):
            return False
        if key is not None:
            entry.keys.append(key)
            self._keys.setdefault(target_id, {})[key] = entry
        return True

    def forget_served(self, target_id: str) -> None:
        """The target (re)connected: serve every copy again (see the module docstring)."""
        self._served.pop(target_id, None)

    def busy(self, target_id: str) -> bool:
        """Whether ``target_id`` has a job queued or running."""
        return target_id in self._tasks

    def queued(self) -> int:
        """Jobs waiting for every target (the running ones not included)."""
        return self._queued_total - len(self._running)

    def latency_s(self) -> float:
        """The recent time from a job's arrival to its end (smoothed over about the last
        20 jobs; 0 when no job ended in the last second): how far behind the link is."""
        if self._clock() - self._ended >= 1.0:
            return 0.0
        return self._latency_s

    def oldest_wait_s(self) -> float:
        """How long the oldest unfinished job has been queued (0 when there is none)."""
        heads = [q[0].queued for q in self._queues.values() if q]
        return max(0.0, self._clock() - min(heads)) if heads else 0.0

    async def _run(self, target_id: str) -> None:
        queue = self._queues[target_id]
        try:
            while queue:
                entry = queue[0]
                self._running[target_id] = entry
                outcome: object = False
                try:
                    outcome = await entry.job()
                except Exception:  # top of the worker loop: one failed job is logged
                    log.exception("link job for %s failed", target_id)
                finally:
                    queue.popleft()
                    self._queued_total -= 1
                    self._running.pop(target_id, None)
                self._done(target_id, entry, outcome)
        finally:
            del self._tasks[target_id]
            if not queue:
                self._queues.pop(target_id, None)
                self._keys.pop(target_id, None)
            if not self._tasks:
                self._idle.set()

    def _done(self, target_id: str, entry: _Entry, outcome: object) -> None:
        """Release the entry's keys; remember them as served when the answer was late, or
        queue a copy again (see the module docstring)."""
        keys = self._keys.get(target_id, {})
        for key in entry.keys:
            if keys.get(key) is entry:
                del keys[key]
        now = self._clock()
        self._latency_s += 0.05 * (now - entry.queued - self._latency_s)
        self._ended = now
        if not entry.keys:
            return
        late = now - entry.queued >= self._late_s
        again = entry.copy_running
        if outcome is False:
            again = entry.copy or entry.copy_running  # not served: nothing is lost
        elif late:
            again = None
            if outcome is True:
                self._remember(target_id, entry.keys, now)
        if again is not None and not self._closed:
            self.submit(target_id, again, key=entry.keys[0])

    def _remember(self, target_id: str, served: list[Hashable], now: float) -> None:
        recent = self._served.setdefault(target_id, {})
        for key in [k for k, at in recent.items() if now - at >= self._served_s]:
            del recent[key]
        for key in served:
            recent[key] = now

    def observe(self) -> None:
        """Set the queue gauges of ``metrics`` (a scrape-time probe): jobs queued, the
        deepest queue, and how long the oldest waiting job has waited."""
        if self._metrics is None:
            return
        depths = [len(q) - (t in self._running) for t, q in self._queues.items()]
        self._metrics.link_queued.set(sum(depths))
        self._metrics.link_queue_max.set(max(depths, default=0))
        self._metrics.link_oldest.set(self.oldest_wait_s())

    async def wait_idle(self, timeout_s: float) -> None:
        """Wait until no worker runs (tests, shutdown). Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    async def close(self) -> None:
        """Refuse new jobs, cancel the running ones and wait for them to end."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        self._keys.clear()
        self._served.clear()
        self._running.clear()
