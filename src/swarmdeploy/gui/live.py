"""Live pages: an ``/events`` subscription that lives exactly as long as the page in the
browser, through the public route (``swarmdeploy.client.events``, in process)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nicegui import background_tasks, ui

from swarmdeploy.client import ApiError
from swarmdeploy.client.events import subscribe
from swarmdeploy.gui.context import GuiContext

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


def follow(
    ctx: GuiContext, api_key: str, params: Mapping[str, str], on_frame: Handler
) -> asyncio.Task[None]:
    """Call ``on_frame`` for every ``/events`` frame matching ``params`` while the current
    page is open (or until the returned task is cancelled); a ``dropped`` notice is passed on
    too (re-read over REST then)."""
    client = ui.context.client

    async def run() -> None:
        try:
            async with subscribe(ctx.app, api_key, params) as frames:
                async for frame in frames:
                    await on_frame(frame)
        except ApiError as exc:
            log.info("live updates refused for a GUI page: %s", exc)

    task: asyncio.Task[None] = background_tasks.create(run(), name="gui-events")
    client.on_delete(task.cancel)
    return task


class Debounced:
    """Runs ``action`` at most every ``interval_s`` however often :meth:`poke` is called,
    and once more after the last poke (so the final state is always shown)."""

    def __init__(self, action: Callable[[], Awaitable[None]], interval_s: float) -> None:
        self._action = action
        self._interval_s = interval_s
        self._pending = False
        self._running = False

    async def poke(self) -> None:
        """Ask for a run."""
        self._pending = True
        if self._running:
            return
        self._running = True
        try:
            while self._pending:
                self._pending = False
                await self._action()
                await asyncio.sleep(self._interval_s)  # pacing, not waiting for a condition
        finally:
            self._running = False
