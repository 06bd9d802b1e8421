"""The seam through which REST calls hand requests for one target to the transport.

``PUT /targets/{id}/logs|stop|command``, ``DELETE /targets/{id}/command`` and
``PUT /tasks/{id}/stop`` validate their input and then :meth:`Dispatcher.submit` a request.
The transport server (``manager.link``) registers a wake-up callback with
:meth:`Dispatcher.set_wakeup`: on every submission it drains the queue of a connected target
at once; a target that is offline keeps its requests queued here until its next ``hello``
(docs/protocol.md §6.2). :meth:`Dispatcher.ready` serves a polling consumer instead.

:class:`MemoryDispatcher` keeps a bounded FIFO per target in this process. A full queue is
refused with :class:`~swarmdeploy.manager.errors.Unavailable` (HTTP 503) rather than dropping
an operator's stop or command silently.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import uuid
from collections.abc import Callable, Collection
from typing import Literal, Protocol

from swarmdeploy.manager.errors import Unavailable


def _request_id() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass(frozen=True, slots=True)
class LogRequest:
    """Ask the agent for the log lines it kept since ``if_modified_since`` (ms)."""

    if_modified_since: int
    id: str = dataclasses.field(default_factory=_request_id)
    kind: Literal["logs"] = "logs"


@dataclasses.dataclass(frozen=True, slots=True)
class StopRequest:
    """Stop the processes of ``task_id`` on the target, or of every task when ``None``."""

    task_id: str | None = None
    id: str = dataclasses.field(default_factory=_request_id)
    kind: Literal["stop"] = "stop"


@dataclasses.dataclass(frozen=True, slots=True)
class CommandRequest:
    """Run one terminal command on the target; ``operator`` names who asked (audit)."""

    command: str
    operator: str
    id: str = dataclasses.field(default_factory=_request_id)
    kind: Literal["command"] = "command"


@dataclasses.dataclass(frozen=True, slots=True)
class CommandStopRequest:
    """Kill the running terminal command of the target (process group, TERM then KILL)."""

    id: str = dataclasses.field(default_factory=_request_id)
    kind: Literal["command_stop"] = "command_stop"


TargetRequest = LogRequest | StopRequest | CommandRequest | CommandStopRequest
#: Called (synchronously, must not block) after a request was queued for a target.
Wakeup = Callable[[str, TargetRequest], None]


class Dispatcher(Protocol):
    """Queue of requests per target, filled by the API, drained by the transport."""

    async def submit(self, target_id: str, request: TargetRequest) -> None:
        """Queue ``request`` for ``target_id``. Raises :class:`Unavailable` when full."""

    async def drain(self, target_id: str) -> list[TargetRequest]:
        """Remove and return every queued request of ``target_id`` in submission order."""

    async def ready(self) -> list[str]:
        """Wait until at least one target has queued requests; return those target ids."""

    async def discard(self, target_id: str) -> int:
        """Drop every queued request of ``target_id`` (on revocation); returns how many."""

    async def remove(self, target_id: str, request_ids: Collection[str]) -> list[TargetRequest]:
        """Remove the queued requests of ``target_id`` with these ids; returns them."""

    def set_wakeup(self, wakeup: Wakeup | None) -> None:
        """Call ``wakeup(target_id, request)`` after every successful :meth:`submit`."""


class MemoryDispatcher:
    """:class:`Dispatcher` with a bounded in-memory FIFO per target (one event loop)."""

    def __init__(self, *, max_per_target: int) -> None:
        if max_per_target < 1:
            raise ValueError("max_per_target must be at least 1")
        self._max = max_per_target
        self._queues: dict[str, collections.deque[TargetRequest]] = {}
        self._changed = asyncio.Event()
        self._wakeup: Wakeup | None = None

    async def submit(self, target_id: str, request: TargetRequest) -> None:
        """Queue ``request``; refuses with :class:`Unavailable` when the queue is full."""
        queue = self._queues.setdefault(target_id, collections.deque())
        if len(queue) >= self._max:
            raise Unavailable(
                f"{len(queue)} requests are already waiting for target {target_id}; "
                "try again when it is online",
                retry_after_s=30,
            )
        queue.append(request)
        self._changed.set()
        if self._wakeup is not None:
            self._wakeup(target_id, request)

    async def drain(self, target_id: str) -> list[TargetRequest]:
        """Remove and return the queued requests of ``target_id``."""
        queue = self._queues.pop(target_id, None)
        return list(queue) if queue else []

    async def ready(self) -> list[str]:
        """Wait for queued requests; returns the ids of targets that have some."""
        while not self._queues:
            self._changed.clear()
            await self._changed.wait()
        return sorted(self._queues)

    async def discard(self, target_id: str) -> int:
        """Drop the queued requests of ``target_id``."""
        return len(self._queues.pop(target_id, ()))

    async def remove(self, target_id: str, request_ids: Collection[str]) -> list[TargetRequest]:
        """Remove the queued requests of ``target_id`` whose id is in ``request_ids``."""
        queue = self._queues.get(target_id)
        if not queue:
            return []
        removed = [r for r in queue if r.id in request_ids]
        kept = [r for r in queue if r.id not in request_ids]
        if kept:
            self._queues[target_id] = collections.deque(kept)
        else:
            del self._queues[target_id]
        return removed

    def set_wakeup(self, wakeup: Wakeup | None) -> None:
        """Call ``wakeup(target_id, request)`` after every successful :meth:`submit`."""
        self._wakeup = wakeup

    def pending(self, target_id: str) -> list[TargetRequest]:
        """A copy of the queued requests of ``target_id`` (for inspection and tests)."""
        return list(self._queues.get(target_id, ()))
