"""One serial worker per target: jobs of one target run in order, targets run concurrently.

Everything the link does for a target -- handling its messages, announcing a new task to it,
delivering a request -- is a job on that target's queue. Serial per target keeps the protocol
simple (an ``accepted`` report is handled after the ``announce`` that caused it was recorded);
concurrent across targets keeps one slow database round trip from stalling the fleet. A
worker task exists only while its queue has jobs. Queues are bounded: a full queue refuses a
job (the protocol's acknowledgements make the agent send again).

A job may carry a ``key`` (an agent's message: its type and encoded content): a job whose key
is already waiting in the queue is merged into it. An agent that re-sends while the manager is
behind then costs one answer, not one per copy -- the waiting job answers them all.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

import msgspec

from swarmdeploy.manager.services.metrics import Metrics

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


def message_key(msg: msgspec.Struct) -> Hashable:
    """The merge key of an agent's message: its type and its encoded content (an exact
    re-send has the same key; anything that differs, e.g. a report's time, does not)."""
    return (type(msg).__name__, msgspec.msgpack.encode(msg))


class TargetWorkers:
    """Per-target job queues (see the module docstring). Single event loop."""

    def __init__(self, *, max_queued: int, metrics: Metrics | None = None) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self._max = max_queued
        self._metrics = metrics
        #: per target: (job, merge key, time queued on the monotonic clock)
        self._queues: dict[str, collections.deque[tuple[Job, Hashable | None, float]]] = {}
        self._waiting: dict[str, set[Hashable]] = {}
        self.merged = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, target_id: str, job: Job, *, key: Hashable | None = None) -> bool:
        """Queue ``job`` for ``target_id``; ``False`` when its queue is full or closed. A job
        whose ``key`` is already waiting is merged into that one (``True``, not queued)."""
        if self._closed:
            return False
        waiting = self._waiting.setdefault(target_id, set())
        if key is not None and key in waiting:
            self.merged += 1
            if self._metrics is not None:
                self._metrics.link_merged.inc()
            return True
        queue = self._queues.setdefault(target_id, collections.deque())
        if len(queue) >= self._max:
            log.warning("work queue of %s is full; dropped a job", target_id)
            if self._metrics is not None:
                self._metrics.link_refused.inc()
            return False
        queue.append((job, key, time.monotonic()))
        if key is not None:
            waiting.add(key)
        if target_id not in self._tasks:
            self._idle.clear()
            self._tasks[target_id] = asyncio.create_task(
                self._run(target_id), name=f"link:{target_id}"
            )
        return True

    def busy(self, target_id: str) -> bool:
        """Whether ``target_id`` has a job queued or running."""
        return target_id in self._tasks

    async def _run(self, target_id: str) -> None:
        queue = self._queues[target_id]
        try:
            while queue:
                job, key, _ = queue.popleft()
                if key is not None:
                    self._waiting[target_id].discard(key)  # a copy arriving now runs again
                try:
                    await job()
                except Exception:  # top of the worker loop: one failed job is logged
                    log.exception("link job for %s failed", target_id)
        finally:
            del self._tasks[target_id]
            if not queue:
                self._queues.pop(target_id, None)
                self._waiting.pop(target_id, None)
            if not self._tasks:
                self._idle.set()

    def observe(self) -> None:
        """Set the queue gauges of ``metrics`` (a scrape-time probe): jobs queued, the
        deepest queue, and how long the oldest waiting job has waited."""
        if self._metrics is None:
            return
        depths = [len(q) for q in self._queues.values()]
        heads = [q[0][2] for q in self._queues.values() if q]
        self._metrics.link_queued.set(sum(depths))
        self._metrics.link_queue_max.set(max(depths, default=0))
        self._metrics.link_oldest.set(time.monotonic() - min(heads) if heads else 0.0)

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
        self._waiting.clear()
