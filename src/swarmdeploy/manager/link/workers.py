"""One serial worker per target: jobs of one target run in order, targets run concurrently.

Everything the link does for a target -- handling its messages, announcing a new task to it,
delivering a request -- is a job on that target's queue. Serial per target keeps the protocol
simple (an ``accepted`` report is handled after the ``announce`` that caused it was recorded);
concurrent across targets keeps one slow database round trip from stalling the fleet. A
worker task exists only while its queue has jobs. Queues are bounded: a full queue refuses a
job (the protocol's acknowledgements make the agent send again).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class TargetWorkers:
    """Per-target job queues (see the module docstring). Single event loop."""

    def __init__(self, *, max_queued: int) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self._max = max_queued
        self._queues: dict[str, collections.deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, target_id: str, job: Job) -> bool:
        """Queue ``job`` for ``target_id``; ``False`` when its queue is full or closed."""
        if self._closed:
            return False
        queue = self._queues.setdefault(target_id, collections.deque())
        if len(queue) >= self._max:
            log.warning("work queue of %s is full; dropped a job", target_id)
            return False
        queue.append(job)
        if target_id not in self._tasks:
            self._idle.clear()
            self._tasks[target_id] = asyncio.create_task(
                self._run(target_id), name=f"link:{target_id}"
            )
        return True

    async def _run(self, target_id: str) -> None:
        queue = self._queues[target_id]
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                except Exception:  # top of the worker loop: one failed job is logged
                    log.exception("link job for %s failed", target_id)
        finally:
            del self._tasks[target_id]
            if not queue:
                self._queues.pop(target_id, None)
            if not self._tasks:
                self._idle.set()

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
