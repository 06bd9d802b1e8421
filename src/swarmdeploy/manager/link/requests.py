"""Delivering manager -> agent requests (docs/protocol.md §6.8, §6.2 steps 5 and 6).

The REST API queues requests in the :class:`~swarmdeploy.manager.dispatch.Dispatcher`. For a
connected target the link drains the queue at once (the dispatcher's wake-up); an offline
target keeps its queue there (bounded: the API answers 503 when full) until its ``hello``.
Each drained request becomes its wire message (the dispatcher's id is the ``request_id``),
is kept in :class:`~.pending.PendingRequests` and is sent again at every ``hello`` until the
agent acknowledges it.

``config`` carries name, tags and location set through the API. Its revision is the
target's ``updated_at`` (ms): it grows with every API update, survives restarts without a
schema change, and the agent ignores revisions older than the one it applied. It is pushed
after an update and at a ``hello`` whose ``config_revision`` differs.
"""

from __future__ import annotations

import hashlib
import logging

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.dispatch import Dispatcher
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.link.pending import Pending, PendingRequests, is_terminal, to_message
from swarmdeploy.manager.link.sessions import Sessions
from swarmdeploy.manager.services.control import TERMINAL_TASK
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import TargetEvent, TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TargetRecord
from swarmdeploy.transport.base import ManagerTransport

log = logging.getLogger(__name__)

_UNDELIVERED = (TargetState.PENDING.value, TargetState.ANNOUNCED.value)


def config_message(record: TargetRecord, *, agent_revision: int = 0) -> m.Config:
    """The ``config`` of ``record``. Its revision is ``updated_at``; should the agent hold a
    higher one (the manager's clock went back), that one is reused so the agent applies it.
    The request id names revision and content, so changed content is never taken for a
    repeat."""
    location = record.location
    tags = list(dict.fromkeys(record.tags))
    revision = max(record.updated_at, agent_revision, 0)
    content = repr((revision, tags, record.name, location)).encode()
    digest = hashlib.sha256(content).hexdigest()[:12]
    return m.Config(
        request_id=f"config-{revision}-{digest}",
        revision=revision,
        tags=tags,
        name=record.name[:4096],
        location=None if location is None else m.Location(lat=location.lat, lon=location.lon),
    )


class RequestService:
    """Sends requests, re-sends them until acknowledged, expires terminal ones."""

    def __init__(
        self,
        storage: Storage,
        *,
        transport: ManagerTransport,
        dispatcher: Dispatcher,
        pending: PendingRequests,
        sessions: Sessions,
        logs: LogService,
        states: TaskStates,
        clock: Clock,
        terminal_expiry_ms: int,
    ) -> None:
        self._storage = storage
        self._transport = transport
        self._dispatcher = dispatcher
        self._pending = pending
        self._sessions = sessions
        self._logs = logs
        self._states = states
        self._clock = clock
        self._terminal_expiry_ms = terminal_expiry_ms

    async def deliver_queued(self, target_id: str) -> int:
        """Drain the dispatcher's queue of ``target_id`` and send it; returns how many."""
        requests = await self._dispatcher.drain(target_id)
        now = self._clock()
        for request in requests:
            entry = self._pending.add(target_id, to_message(request), now)
            await self._transport.send(target_id, entry.message)
        return len(requests)

    async def on_hello(self, target_id: str, record: TargetRecord | None, revision: int) -> None:
        """§6.2 steps 5 and 6: re-send what is unacknowledged, deliver what is queued, and
        push ``config`` when the agent's revision differs."""
        await self._expire(target_id, self._clock())
        for entry in self._pending.pending(target_id):
            if isinstance(entry.message, m.Config):
                # step 6 decides: the agent either holds the current revision already (a lost
                # ack) or gets the current configuration below
                self._pending.ack(target_id, entry.message.request_id)
            else:
                await self._transport.send(target_id, entry.message)
        await self.deliver_queued(target_id)
        if record is not None and revision != record.updated_at:
            await self.push_config(record, agent_revision=revision)

    async def push_config(self, record: TargetRecord, *, agent_revision: int = 0) -> None:
        """Send the target's configuration (kept until acknowledged)."""
        message = config_message(record, agent_revision=agent_revision)
        entry = self._pending.add(record.id, message, self._clock())
        await self._transport.send(record.id, entry.message)

    async def on_ack(self, target_id: str, ack: m.RequestAck) -> None:
        """The agent carried out (or refused) a request: forget it and record the outcome."""
        entry = self._pending.ack(target_id, ack.request_id)
        if entry is None:
            return  # a repeated ack, or a request forgotten meanwhile
        request = entry.message
        if not ack.ok:
            task = TERMINAL_TASK if is_terminal(request) else getattr(request, "task_id", "")
            text = f"{m.message_type(request)} refused by the agent: {ack.message}"
            await self._logs.manager_line(target_id, task, text, error=True)
            return
        if isinstance(request, m.LogRequest):
            await self._storage.set_log_request_at(target_id, self._clock())
        elif isinstance(request, m.Stop) and request.task_id:
            await self._stop_undelivered(target_id, request.task_id)

    async def _stop_undelivered(self, target_id: str, task_id: str) -> None:
        """A task stopped on a target that never accepted it ends ``stopped`` here too."""
        try:
            row = await self._states.row(task_id, target_id)
            if row.state in _UNDELIVERED:
                await self._states.apply(
                    task_id, target_id, TargetEvent.STOP, reason="stopped by the operator"
                )
        except (NotFoundError, TransitionError) as exc:
            log.debug("stop of undelivered task %s on %s skipped: %s", task_id, target_id, exc)

    async def expire_absent(self) -> int:
        """Expire terminal requests of targets that are offline; returns how many."""
        now = self._clock()
        count = 0
        for target_id in self._pending.targets_with_terminal():
            if not self._sessions.is_online(target_id):
                count += await self._expire(target_id, now)
        return count

    async def _expire(self, target_id: str, now: int) -> int:
        expired, queued_ids = self._pending.expire_terminal(
            target_id, now, self._terminal_expiry_ms
        )
        removed = await self._dispatcher.remove(target_id, queued_ids) if queued_ids else []
        lines = [_describe(e) for e in expired] + [
            _describe(Pending(to_message(r), now)) for r in removed
        ]
        for line in lines:
            await self._logs.manager_line(
                target_id, TERMINAL_TASK, f"{line} expired: the target was offline", error=True
            )
        return len(lines)


def _describe(entry: Pending) -> str:
    message = entry.message
    if isinstance(message, m.TerminalCommand):
        return f"terminal command {message.command!r}"
    return "terminal stop"
