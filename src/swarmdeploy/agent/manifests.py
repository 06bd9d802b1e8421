"""Second delivery stage: getting, checking and keeping a task's signed manifest
(docs/protocol.md §6.3).

:class:`ManifestFetcher` sends ``fetch_task`` and waits for the ``task`` answer, sending again
after ``resend_s``, then after twice as long each time (:class:`~swarmdeploy.agent.backoff.Backoff`:
capped, with jitter), and at once after every reconnect (which restarts the backoff); an
``error`` answer fails the fetch with a :class:`~swarmdeploy.agent.errors.TransferError`,
unless it is transient (``busy``, ``internal``: asked again when the backoff says so).
Verification is :meth:`swarmdeploy.agent.trust.Verifier.verify_received` (CRD-75). The
``task`` message is kept in ``DIR/tasks/<task>/task.msgpack`` (where sandboxed commands
never see it) so that an agent restart resumes without asking again and every start re-verifies it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from swarmdeploy.agent.backoff import Backoff
from swarmdeploy.agent.errors import TransferError
from swarmdeploy.agent.fsutil import atomic_write
from swarmdeploy.agent.reports import Send
from swarmdeploy.agent.transfer import TRANSIENT_CODES
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import Error, FetchTask, Task, decode, encode

logger = logging.getLogger(__name__)
TASK_FILE = "task.msgpack"
_POLL_S = 0.25


class ManifestFetcher:
    """Asks the manager for manifests; :meth:`on_task`/:meth:`on_error` deliver answers."""

    def __init__(
        self,
        send: Send,
        resend_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] | None = None,
        poll_s: float = _POLL_S,
    ) -> None:
        self._send = send
        self._resend_s = resend_s
        self._clock = clock
        self._rng = rng
        self._poll_s = poll_s
        self._waiting: dict[str, asyncio.Future[Task]] = {}
        self._reconnects = 0

    async def fetch(self, task_id: str) -> Task:
        """``fetch_task`` until the ``task`` arrives; TransferError if the manager refuses."""
        future: asyncio.Future[Task] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = future
        backoff, seen = Backoff(self._resend_s, rng=self._rng), self._reconnects
        try:
            while not future.done():
                now = self._clock()
                if seen != self._reconnects:
                    seen = self._reconnects
                    backoff = Backoff(self._resend_s, rng=self._rng)  # due at once, base wait
                if backoff.due(now):
                    backoff.sent(now)
                    await self._send(FetchTask(task_id=task_id))
                await asyncio.wait({future}, timeout=self._poll_s)
            return future.result()
        finally:
            del self._waiting[task_id]

    def on_task(self, msg: Task) -> None:
        """A ``task`` arrived (ignored unless asked for)."""
        future = self._waiting.get(msg.task_id)
        if future is not None and not future.done():
            future.set_result(msg)

    def on_error(self, msg: Error) -> bool:
        """An ``error`` answering ``fetch_task``; False if nobody waits for that task."""
        future = self._waiting.get(msg.task_id)
        if future is None or future.done():
            return False
        if msg.code in TRANSIENT_CODES:
            return True  # e.g. a build's artifacts are not there yet: asked again later
        future.set_exception(TransferError(f"the manager refused the task: {msg.message}"))
        return True

    def on_reconnect(self) -> None:
        """A new connection: ask again at once."""
        self._reconnects += 1


def store_task(directory: Path, message: Task) -> None:
    """Keep the ``task`` message in ``directory`` (created if needed; written once)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (directory / TASK_FILE).exists():
        atomic_write(directory / TASK_FILE, encode(message), 0o600)


def load_task(directory: Path) -> Task | None:
    """The kept ``task`` message, or None if there is none (or it is unreadable)."""
    try:
        message = decode((directory / TASK_FILE).read_bytes())
    except (OSError, MessageError):
        return None
    return message if isinstance(message, Task) else None
