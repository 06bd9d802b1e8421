"""Periodic background jobs (log retention, token purge, task expiry) with a lifecycle."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class JobState(enum.Enum):
    """``NEW -> RUNNING -> STOPPED``; a stopped job cannot be started again."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class PeriodicJob:
    """Runs ``work()`` every ``interval_s`` seconds (first run after one interval).

    A failing run is logged with its traceback and the job carries on: one bad round must not
    end retention or expiry for the life of the process.
    """

    def __init__(self, name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.name = name
        self.interval_s = interval_s
        self._work = work
        self._task: asyncio.Task[None] | None = None
        self.state = JobState.NEW
        self.runs = 0
        self.failures = 0

    def start(self) -> None:
        """Start the loop in the running event loop."""
        if self.state is not JobState.NEW:
            raise RuntimeError(f"job {self.name} is {self.state.value}; it can start only once")
        self.state = JobState.RUNNING
        self._task = asyncio.create_task(self._loop(), name=f"job:{self.name}")
        log.info("background job %s started (every %.0f s)", self.name, self.interval_s)

    async def run_once(self) -> None:
        """Run the work once now, logging (not raising) a failure."""
        try:
            await self._work()
        except Exception:  # top of the job loop: log and carry on
            self.failures += 1
            log.exception("background job %s failed", self.name)
        finally:
            self.runs += 1

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.run_once()

    async def stop(self) -> None:
        """Cancel the loop and wait for it to end. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.state is JobState.RUNNING:
            log.info("background job %s stopped", self.name)
        self.state = JobState.STOPPED
