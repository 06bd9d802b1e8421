"""Announcing a new task behind ``POST /tasks``, in paced waves (docs/protocol.md §6.3).

``POST /tasks`` stores and signs the task and answers; the link hands the (task, target)
pairs to :class:`Announcer`, which queues one announcement job on each target's serial
worker (:mod:`.workers`) -- ``wave`` targets at a time, the next wave once the jobs of the
previous one have run. A task for a thousand targets then neither holds up the answer nor
starts a thousand jobs at once: the first agents accept and pull their chunks while the
later waves are being announced, and no agent waits so long for an answer that it sends its
messages again.

Chunk serving is paced through the same queue: a target counts as *transferring* from its
announcement until its row leaves ``announced``, ``accepted`` and ``transferring`` (the link
calls :meth:`Announcer.row_changed` for every changed row). A wave is started only while
fewer than ``max_active`` targets are transferring, so the chunks in flight (and the memory
they take in the manager's send queues) stay bounded. A target that never answers does not
hold the queue up: after ``stall_s`` without any transfer ending the next wave starts anyway.

The waves are also paced by the link's measured backlog (``behind``: how many seconds the
link is behind, :class:`LoopLag` and the workers' oldest waiting job): while it is above
``max_behind_s`` no wave starts, so a manager that cannot keep up with the targets already
transferring (and the rest of the fleet's heartbeats and health reports) does not take on
more until it has caught up -- an answer later than the agents' re-send wait (10 s) costs a
re-send. A wave waits for the backlog at most ``stall_s`` x 5, so the announcer never stops.
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

#: Announce a task to a target; whether the announcement was sent.
Announce = Callable[[str, str], Awaitable[bool]]
#: Row states in which an announced target still counts as transferring.
_TRANSFERRING = frozenset({"announced", "accepted", "transferring"})
#: Longest wait for one wave's jobs (a job that never runs must not stop the announcer).
WAVE_TIMEOUT_S = 30.0
#: How often the backlog is looked at while a wave waits for it.
BEHIND_POLL_S = 0.05
#: Seconds the link is behind (0 when it keeps up).
Behind = Callable[[], float]


class LoopLag:
    """How late the event loop runs a timer (the backlog of ready work ahead of it), as the
    newest of probes every ``interval_s`` (``peak_s``: the largest so far). Single event
    loop."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self._interval_s = interval_s
        self.lag_s = 0.0
        self.peak_s = 0.0

    async def run(self) -> None:
        """Probe until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self.lag_s = max(0.0, loop.time() - due)
            self.peak_s = max(self.peak_s, self.lag_s)


class Announcer:
    """Paced announcement of new tasks (see the module docstring). Single event loop."""

    def __init__(
        self,
        workers: TargetWorkers,
        announce: Announce,
        *,
        wave: int,
        max_active: int | None = None,
        stall_s: float = 2.0,
        behind: Behind | None = None,
        max_behind_s: float = 2.0,
    ) -> None:
        if wave < 1:
            raise ValueError("wave must be at least 1")
        if max_active is not None and max_active < wave:
            raise ValueError("max_active must be at least wave")
        self._workers = workers
        self._announce = announce
        self._wave = wave
        self._max_active = max_active
        self._stall_s = stall_s
        self._behind = behind
        self._max_behind_s = max_behind_s
        #: Waves held back while the link was behind (for tests and the bench).
        self.held = 0
        self._active: set[tuple[str, str]] = set()
        self._progress = asyncio.Event()
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

    def active(self) -> int:
        """Announced pairs still transferring (see the module docstring)."""
        return len(self._active)

    def row_changed(self, task_id: str, target_id: str, state: str) -> None:
        """A row changed: a pair past its transfer no longer counts as transferring."""
        if state not in _TRANSFERRING and (task_id, target_id) in self._active:
            self._active.discard((task_id, target_id))
            self._progress.set()

    async def _room(self) -> None:
        """Wait until a wave fits under ``max_active`` (or transfers stalled)."""
        limit = self._max_active
        while limit is not None and len(self._active) + self._wave > limit:
            self._progress.clear()
            try:
                async with asyncio.timeout(self._stall_s):
                    await self._progress.wait()
            except TimeoutError:
                log.info("announcer: %d transfer(s) made no progress for %.0f s; going on",
                         len(self._active), self._stall_s)  # fmt: skip
                self._active.clear()
                return

    async def _caught_up(self) -> None:
        """Wait while the link is behind (see the module docstring)."""
        if self._behind is None or self._behind() <= self._max_behind_s:
            return
        self.held += 1
        for _ in range(int(self._stall_s * 5 / BEHIND_POLL_S)):
            await asyncio.sleep(BEHIND_POLL_S)
            if self._behind() <= self._max_behind_s:
                return
        log.info("announcer: the link is still %.1f s behind; going on", self._behind())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                await self._room()
                await self._caught_up()
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
            if await self._announce(task_id, target_id) and self._max_active is not None:
                self._active.add((task_id, target_id))
        finally:
            if not finished.done():
                finished.set_result(None)

    async def close(self) -> None:
        """Stop announcing (the targets get their tasks at their next ``hello``)."""
        self._closed = True
        self._queue.clear()
        self._active.clear()
        runner = self._runner
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
