"""Announcing a new task behind ``POST /tasks``, in paced waves (docs/protocol.md §6.3).

``POST /tasks`` stores and signs the task and answers; the link hands the (task, target)
pairs to :class:`Announcer`, which queues one announcement job on each target's serial
worker (:mod:`.workers`) -- ``wave`` targets at a time, the next wave once the jobs of the
previous one have run. A task for a thousand targets then neither holds up the answer nor
starts a thousand jobs at once: the first agents accept and pull their chunks while the
later waves are being announced, and no agent waits so long for an answer that it sends its
messages again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable

from swarmdeploy.manager.link.workers import TargetWorkers

log = logging.getLogger(__name__)

Announce = Callable[[str, str], Awaitable[object]]
#: Longest wait for one wave's jobs (a job that never runs must not stop the announcer).
WAVE_TIMEOUT_S = 30.0


class Announcer:
    """Paced announcement of new tasks (see the module docstring). Single event loop."""

    def __init__(self, workers: TargetWorkers, announce: Announce, *, wave: int) -> None:
        if wave < 1:
            raise ValueError("wave must be at least 1")
        self._workers = workers
        self._announce = announce
        self._wave = wave
        self._queue: collections.deque[tuple[str, str]] = collections.deque()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        #: Announcement jobs queued so far and waves run (for tests and the bench).
        self.queued = 0
        self.waves = 0

    def add(self, task_id: str, target_ids: Iterable[str]) -> None:
        """Announce ``task_id`` to ``target_ids`` soon (in queue order)."""
        if self._closed:
            return
        self._queue.extend((task_id, t) for t in target_ids)
        if self._queue and self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="link:announcer"
            )

    def pending(self) -> int:
        """Pairs not yet handed to a worker."""
        return len(self._queue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                done: list[asyncio.Future[None]] = []
                for _ in range(min(self._wave, len(self._queue))):
                    task_id, target_id = self._queue.popleft()
                    finished: asyncio.Future[None] = loop.create_future()
                    job = functools.partial(self._one, task_id, target_id, finished)
                    if self._workers.submit(target_id, job):
                        done.append(finished)
                        self.queued += 1
                self.waves += 1
                if done:
                    await asyncio.wait(done, timeout=WAVE_TIMEOUT_S)
        finally:
            self._runner = None

    async def _one(self, task_id: str, target_id: str, finished: asyncio.Future[None]) -> None:
        try:
            await self._announce(task_id, target_id)
        finally:
            if not finished.done():
                finished.set_result(None)

    async def close(self) -> None:
        """Stop announcing (the targets get their tasks at their next ``hello``)."""
        self._closed = True
        self._queue.clear()
        runner = self._runner
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
