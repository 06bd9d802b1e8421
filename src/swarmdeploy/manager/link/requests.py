"""Delivering manager -> agent requests (docs/protocol.md §6.8, §6.2 steps 5 and 6).

Every request lives in storage (``requests``) from submission until the agent answers it, so
a manager restart loses none and any replica can deliver it (ADR 0005). The REST API submits
through the :class:`~swarmdeploy.manager.dispatch.Dispatcher`, which hands each request to
:meth:`RequestService.accept` (this service is the dispatcher's sink): it is stored
``pending`` under the per-target bound, and a connected target's worker is woken to send it
at once (``sent``). At every ``hello`` every open request is sent again; the agent answers
``request_ack`` and the request ends ``acked`` or ``refused`` -- recorded once, whichever
replica hears the answer. ``terminal`` and ``terminal_stop`` expire when their deadline
passes while the target is away (a ``$manager`` line says so).

``config`` carries name, tags and location set through the API. Its revision is the
target's ``updated_at`` (ms), which storage keeps growing even when the clock goes back; the
agent ignores revisions older than the one it applied. It is pushed after an update and at
a ``hello`` whose ``config_revision`` differs; a newer one supersedes an open older one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.dispatch import TargetRequest
from swarmdeploy.manager.errors import NotFoundError, Unavailable
from swarmdeploy.manager.link.pending import (
    SUBMITTED_KINDS,
    describe,
    from_record,
    signing_key_id,
    to_message,
    to_record,
)
from swarmdeploy.manager.link.sessions import Sessions
from swarmdeploy.manager.services.control import TERMINAL_TASK
from swarmdeploy.manager.services.log_access import terminal_stage
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.errors import MessageError, TransitionError
from swarmdeploy.protocol.states import TargetEvent, TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import RequestRecord, TargetRecord
from swarmdeploy.transport.base import ManagerTransport

log = logging.getLogger(__name__)

_UNDELIVERED = (TargetState.PENDING.value, TargetState.ANNOUNCED.value)

#: Called with a target id when it has a new request: queue delivery on its worker.
Wake = Callable[[str], None]


def config_message(record: TargetRecord, *, agent_revision: int = 0) -> m.Config:
    """The ``config`` of ``record``. Its revision is ``updated_at``; should the agent hold a
    higher one (e.g. restored manager data), that one is reused so the agent applies it.
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


def open_stops(records: Sequence[RequestRecord]) -> list[str]:
    """Task ids of the open stop requests among ``records`` ("" : every task), for
    ``welcome`` (§6.2: an agent that just started restarts none of them)."""
    stops = [str(r.payload.get("task_id") or "") for r in records if r.kind == "stop"]
    return list(dict.fromkeys(stops))[:256]


class RequestService:
    """Stores, sends and re-sends requests until answered; expires terminal ones."""

    def __init__(
        self,
        storage: Storage,
        *,
        transport: ManagerTransport,
        sessions: Sessions,
        logs: LogService,
        states: TaskStates,
        clock: Clock,
        terminal_expiry_ms: int,
        wake: Wake,
        metrics: Metrics | None = None,
    ) -> None:
        self._storage = storage
        self._metrics = metrics
        self._transport = transport
        self._sessions = sessions
        self._logs = logs
        self._states = states
        self._clock = clock
        self._terminal_expiry_ms = terminal_expiry_ms
        self._wake = wake

    # -- the dispatcher's sink -----------------------------------------------------------------
    async def accept(self, target_id: str, request: TargetRequest, *, max_open: int) -> None:
        """Store a submitted request (``pending``) and wake the target's worker. Raises
        :class:`Unavailable` when the target has ``max_open`` open submitted requests already
        (its ``config`` does not count) or is not registered (deleted meanwhile: a task stop
        then lists it as not reachable instead of failing as a whole)."""
        record = to_record(
            target_id,
            to_message(request),
            now_ms=self._clock(),
            terminal_expiry_ms=self._terminal_expiry_ms,
        )
        try:
            added = await self._storage.add_request(
                record, max_open=max_open, counted_kinds=SUBMITTED_KINDS
            )
        except NotFound:
            raise Unavailable(f"target {target_id} is not registered") from None
        if not added:
            raise Unavailable(
                f"{max_open} requests are already waiting for target {target_id}; "
                "try again when it is online",
                retry_after_s=30,
            )
        self._wake(target_id)

    async def discard(self, target_id: str) -> int:
        """Delete every request of ``target_id`` (revoked)."""
        return await self._storage.delete_requests(target_id)

    # -- sending -------------------------------------------------------------------------------
    async def deliver(self, target_id: str) -> int:
        """Send the target's requests that were never sent (the wake-up job); returns how
        many were handed to its connection."""
        records = await self._storage.open_requests(target_id)
        return await self._send(target_id, [r for r in records if r.state == "pending"])

    async def _send(self, target_id: str, records: Sequence[RequestRecord]) -> int:
        sent: list[str] = []
        for record in records:
            try:
                message = from_record(record)
            except MessageError as exc:
                log.error("request %s of %s cannot be sent: %s", record.id, target_id, exc)
                await self._storage.finish_request(
                    target_id, record.id, state="expired", at=self._clock(), message=str(exc)
                )
                continue
            if await self._transport.send(target_id, message):
                sent.append(record.id)
                if record.state != "pending" and self._metrics is not None:
                    self._metrics.link_resent.inc()
        if sent:
            await self._storage.mark_requests_sent(target_id, sent)
        return len(sent)

    async def open_requests(self, target_id: str) -> list[RequestRecord]:
        """The target's open requests, read once per ``hello`` for :func:`open_stops` and
        :meth:`on_hello`."""
        return await self._storage.open_requests(target_id)

    async def on_hello(
        self,
        target_id: str,
        record: TargetRecord | None,
        revision: int,
        records: Sequence[RequestRecord],
    ) -> None:
        """§6.2 steps 5 and 6: expire what is overdue, send every open request again, and
        push ``config`` when the agent's revision differs. ``records`` are the open
        requests read at the ``hello`` (read again only when one expired: the expiry is a
        write, made only when a request is due)."""
        now = self._clock()
        if any(r.expires_at is not None and r.expires_at <= now for r in records):
            await self._expire(target_id, now)
            records = await self._storage.open_requests(target_id)
        await self._send(target_id, [r for r in records if r.kind != "config"])
        if record is None:
            return
        if revision != record.updated_at:
            await self.push_config(record, agent_revision=revision)  # supersedes open ones
            return
        for open_config in (r for r in records if r.kind == "config"):
            # the agent holds the current revision already: its ack was lost
            await self._storage.finish_request(
                target_id, open_config.id, state="acked", at=self._clock(),
                message="the agent reported this revision",
            )  # fmt: skip

    async def push_config(self, record: TargetRecord, *, agent_revision: int = 0) -> None:
        """Store the target's configuration (superseding an open one) and send it."""
        message = config_message(record, agent_revision=agent_revision)
        stored = to_record(record.id, message, now_ms=self._clock(), terminal_expiry_ms=0)
        try:
            await self._storage.add_request(stored, supersede=True)
        except NotFound:
            return  # deleted meanwhile
        await self._send(record.id, [stored])

    # -- answers and expiry --------------------------------------------------------------------
    async def on_ack(self, target_id: str, ack: m.RequestAck) -> None:
        """The agent carried out (or refused) a request: record the outcome once."""
        finished = await self._storage.finish_request(
            target_id,
            ack.request_id,
            state="acked" if ack.ok else "refused",
            at=self._clock(),
            message=ack.message,
        )
        if finished is None:
            return  # a repeated ack, or a request that expired meanwhile
        if not ack.ok:
            terminal = finished.kind.startswith("terminal")
            task = TERMINAL_TASK if terminal else str(finished.payload.get("task_id", ""))
            text = f"{finished.kind} refused by the agent: {ack.message}"
            stage = terminal_stage(signing_key_id(finished)) if terminal else ""
            await self._logs.manager_line(target_id, task, text, stage=stage, error=True)
        elif finished.kind == "log_request":
            await self._storage.set_log_request_at(target_id, self._clock())
        elif finished.kind == "stop" and finished.payload.get("task_id"):
            await self._stop_undelivered(target_id, str(finished.payload["task_id"]))

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
        """Expire overdue requests (terminal ones) of targets that are not online here;
        returns how many."""
        now = self._clock()
        count = 0
        for target_id in await self._storage.targets_with_expired_requests(now=now):
            if not self._sessions.is_online(target_id):
                count += await self._expire(target_id, now)
        return count

    async def _expire(self, target_id: str, now: int) -> int:
        expired = await self._storage.expire_requests(target_id, now=now)
        for record in expired:
            terminal = record.kind.startswith("terminal")
            await self._logs.manager_line(
                target_id,
                TERMINAL_TASK if terminal else "",
                f"{describe(record)} expired: the target was offline",
                stage=terminal_stage(signing_key_id(record)) if terminal else "",
                error=True,
            )
        return len(expired)
