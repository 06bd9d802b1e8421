"""The seam through which REST calls hand requests for one target to the agent link.

``PUT /targets/{id}/logs|stop|command``, ``DELETE /targets/{id}/command`` and
``PUT /tasks/{id}/stop`` validate their input and then :meth:`Dispatcher.submit` a request.

While the agent link runs it is attached as the dispatcher's :class:`RequestSink`
(:meth:`Dispatcher.attach`): every submission is stored durably by the link (table
``requests``, docs/adr/0005-manager-link-state.md) before ``submit`` returns, and a connected
target gets it at once; an offline target gets it at its next ``hello``, also after a
manager restart (docs/protocol.md §6.2, §6.8). The per-target bound is the dispatcher's: a
target with ``max_per_target`` unanswered requests refuses more with
:class:`~swarmdeploy.manager.errors.Unavailable` (HTTP 503) rather than dropping an
operator's stop or command silently.

Without an attached sink (an app without agent link, service tests) :class:`MemoryDispatcher`
keeps a bounded FIFO per target in this process, served by :meth:`MemoryDispatcher.drain`
and :meth:`MemoryDispatcher.ready`; what is queued there moves to the sink when one is
attached.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from typing import Literal, Protocol

from swarmdeploy.manager.errors import ManagerError, Unavailable

log = logging.getLogger(__name__)


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
    """Run one terminal command on the target; ``operator`` names who asked (audit).

    ``statement`` (base64), ``signature`` (base64) and ``certificate`` carry the operator's
    signature over the command (``manager/services/request_signing.py``); ``key_id`` names
    the signing key (terminal output is shown to its owner and admins only)."""

    command: str
    operator: str
    id: str = dataclasses.field(default_factory=_request_id)
    kind: Literal["command"] = "command"
    statement: str = ""
    signature: str = ""
    certificate: str = ""
    key_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class CommandStopRequest:
    """Kill the running terminal command of the target (process group, TERM then KILL)."""

    id: str = dataclasses.field(default_factory=_request_id)
    kind: Literal["command_stop"] = "command_stop"


TargetRequest = LogRequest | StopRequest | CommandRequest | CommandStopRequest


class RequestSink(Protocol):
    """Takes submitted requests over durably (implemented by the agent link)."""

    async def accept(self, target_id: str, request: TargetRequest, *, max_open: int) -> None:
        """Store ``request`` for delivery. Raises :class:`Unavailable` when the target has
        ``max_open`` unanswered requests already, and other :class:`ManagerError` s (an
        unknown target) as they come."""

    async def discard(self, target_id: str) -> int:
        """Drop every request of ``target_id`` (on revocation); returns how many."""


class Dispatcher(Protocol):
    """Requests per target, submitted by the API and delivered by the agent link."""

    async def submit(self, target_id: str, request: TargetRequest) -> None:
        """Queue ``request`` for ``target_id``. Raises :class:`Unavailable` when full."""

    async def discard(self, target_id: str) -> int:
        """Drop every request of ``target_id`` (on revocation); returns how many."""

    async def attach(self, sink: RequestSink | None) -> None:
        """Hand every later submission (and what is queued now) to ``sink``; ``None``
        detaches it."""


class MemoryDispatcher:
    """:class:`Dispatcher` with a bounded in-memory FIFO per target while no sink is
    attached (one event loop)."""

    def __init__(self, *, max_per_target: int) -> None:
        if max_per_target < 1:
            raise ValueError("max_per_target must be at least 1")
        self._max = max_per_target
        self._queues: dict[str, collections.deque[TargetRequest]] = {}
        self._changed = asyncio.Event()
        self._sink: RequestSink | None = None

    async def submit(self, target_id: str, request: TargetRequest) -> None:
        """Hand ``request`` to the sink, or queue it; :class:`Unavailable` when the target's
        bound is reached."""
        if self._sink is not None:
            await self._sink.accept(target_id, request, max_open=self._max)
            return
        queue = self._queues.setdefault(target_id, collections.deque())
        if len(queue) >= self._max:
            raise Unavailable(
                f"{len(queue)} requests are already waiting for target {target_id}; "
                "try again when it is online",
                retry_after_s=30,
            )
        queue.append(request)
        self._changed.set()

    async def attach(self, sink: RequestSink | None) -> None:
        """Use ``sink`` from now on; requests queued here move to it in submission order
        (one that it refuses is logged and dropped)."""
        self._sink = sink
        if sink is None:
            return
        queues, self._queues = self._queues, {}
        for target_id, queue in queues.items():
            for request in queue:
                try:
                    await sink.accept(target_id, request, max_open=self._max)
                except ManagerError as exc:
                    log.warning("request %s for %s dropped: %s", request.id, target_id, exc)

    async def drain(self, target_id: str) -> list[TargetRequest]:
        """Remove and return the queued requests of ``target_id`` (no sink attached)."""
        queue = self._queues.pop(target_id, None)
        return list(queue) if queue else []

    async def ready(self) -> list[str]:
        """Wait for queued requests; returns the ids of targets that have some (a polling
        consumer; no sink attached)."""
        while not self._queues:
            self._changed.clear()
            await self._changed.wait()
        return sorted(self._queues)

    async def discard(self, target_id: str) -> int:
        """Drop the requests of ``target_id``, queued here and in the sink."""
        count = len(self._queues.pop(target_id, ()))
        if self._sink is not None:
            count += await self._sink.discard(target_id)
        return count

    def pending(self, target_id: str) -> list[TargetRequest]:
        """A copy of the requests queued here for ``target_id`` (inspection and tests)."""
        return list(self._queues.get(target_id, ()))
