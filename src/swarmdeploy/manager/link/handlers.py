"""What the manager does with each agent message (docs/protocol.md §4.1, §6).

:meth:`AgentHandlers.handle` runs in the target's serial worker. Every message first counts
as contact (§6.1: last-seen, throttled write, ``targetUpdated`` when the target comes
online); then the message's own handler runs. ``hello`` follows §6.2 in order: welcome,
reports, announcements, requests, config. State reports go through the one choke point
(``TaskStates.report``), are persisted, then acknowledged (§6.4); state changes, log
batches and contact updates of many agents share transactions (group commit,
:mod:`~swarmdeploy.manager.services.group_commit`), and each acknowledgement waits for the
commit of its own write. Reports of a build host
also go to the :class:`~swarmdeploy.manager.services.builds.BuildRecorder` (docs/build.md):
its artifacts are recorded before ``built`` is persisted, and a failed or declined build
stops the waiting deploy targets before the report is acknowledged, so that a lost
acknowledgement (the agent repeats its report) repeats these steps too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.link.config import LinkSettings
from swarmdeploy.manager.link.delivery import Delivery
from swarmdeploy.manager.link.logs import LogSequencer
from swarmdeploy.manager.link.requests import RequestService, open_stops
from swarmdeploy.manager.link.sessions import Sessions
from swarmdeploy.manager.link.uploads import UploadReceiver
from swarmdeploy.manager.services.builds import BUILD_ENDED_BADLY, BuildRecorder
from swarmdeploy.manager.services.health import HealthHistory
from swarmdeploy.manager.services.registry import TargetRegistry, target_json
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.compression import choose
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import StorageUnavailable
from swarmdeploy.storage.records import ContactWrite
from swarmdeploy.transport.base import ManagerTransport

log = logging.getLogger(__name__)

#: Called when a build host reported ``built``: announce the task to its deploy targets.
OnBuilt = Callable[[str], Awaitable[None]]


def health_doc(msg: m.Health, received_ms: int) -> dict[str, Any]:
    """The stored health report: the wire fields (``snake_case``, units in the names)."""
    doc = msgspec.to_builtins(msg)
    assert isinstance(doc, dict)
    doc.pop("type", None)
    doc.pop("v", None)
    doc["received_at_ms"] = received_ms
    return doc


def busy_reply(msg: m.Message) -> m.Error | None:
    """``error{busy}`` for a request the agent waits on, ``None`` for other messages."""
    if not isinstance(msg, m.FetchTask | m.ChunkRequest | m.UploadOffer | m.UploadChunk):
        return None
    index = msg.index if isinstance(msg, m.ChunkRequest | m.UploadChunk) else -1
    sha256 = "" if isinstance(msg, m.FetchTask) else msg.sha256
    return m.Error(
        code="busy",
        message="the manager's storage is unavailable; try again",
        in_reply_to=m.message_type(msg),
        task_id=msg.task_id,
        sha256=sha256,
        index=index,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Parts:
    """The collaborators of the handlers (built once by the link server)."""

    storage: Storage
    transport: ManagerTransport
    events: EventHub
    registry: TargetRegistry
    states: TaskStates
    sessions: Sessions
    sequencer: LogSequencer
    delivery: Delivery
    requests: RequestService
    uploads: UploadReceiver
    builds: BuildRecorder
    settings: LinkSettings
    clock: Clock
    on_built: OnBuilt
    #: The current CA-signed revocation list (empty while no operator key is revoked).
    revocations: Callable[[], Awaitable[bytes]]
    #: Sign the deploy manifest of a task whose build delivered (before ``built`` is stored).
    sign_deploy: Callable[[str], Awaitable[None]]
    health: HealthHistory


#: States whose reports are handled one by one, never as a :class:`ReportGroup` (a build
#: host's reports have steps of their own, docs/build.md).
_ALONE = frozenset({TargetState.BUILDING, TargetState.BUILT} | BUILD_ENDED_BADLY)
#: Reports one :class:`ReportGroup` takes at most.
GROUP_MAX = 16


class ReportGroup:
    """A job of a target's worker (:mod:`.workers`): state reports of one task that
    arrived while the job was waiting, handled together (:meth:`AgentHandlers.handle_reports`).
    A bulk deployment's agent reports ``installing`` ... ``exited`` back to back; as one
    group they cost one write instead of four."""

    def __init__(self, handlers: AgentHandlers, target_id: str, first: m.StateReport) -> None:
        self._handlers = handlers
        self._target_id = target_id
        self.reports = [first]

    def take(self, msg: m.StateReport) -> bool:
        """Add a later report of the same task; ``False`` when it must be a job of its own
        (another task, a build step, a full group)."""
        last = self.reports[-1]
        if msg.task_id != last.task_id or len(self.reports) >= GROUP_MAX:
            return False
        if msg.state in _ALONE or last.state in _ALONE:
            return False
        self.reports.append(msg)
        return True

    async def __call__(self) -> bool | None:
        return await self._handlers.handle_reports(self._target_id, self.reports)


class AgentHandlers:
    """Dispatches agent messages to their handlers (see the module docstring)."""

    def __init__(self, parts: Parts) -> None:
        self._p = parts

    async def handle(self, target_id: str, msg: m.Message) -> bool | None:
        """Handle one authenticated message of ``target_id``. The outcome tells the
        target's worker what to do with re-sent copies (:mod:`.workers`): ``True`` served
        (the answer is on its way: drop copies for a while), ``False`` not served (storage
        unavailable, or the answer could not be handed to the connection: handle a copy
        again), ``None`` answered with a refusal that may change (serve copies again)."""
        return await self._handle(target_id, msg, [msg])

    async def handle_reports(self, target_id: str, reports: list[m.StateReport]) -> bool | None:
        """Handle state reports of one task that arrived together (a :class:`ReportGroup`):
        the furthest one goes through the choke point as one write (the states before it
        are on its ``event_path``, as for lost reports, §6.4), then every report is
        acknowledged in order. If the furthest is refused, each is handled on its own.
        The outcome is :meth:`handle`'s."""
        return await self._handle(target_id, reports[-1], reports)

    async def _handle(
        self, target_id: str, msg: m.Message, reports: Sequence[m.Message]
    ) -> bool | None:
        p = self._p
        if not p.transport.is_allowed(target_id):
            return None  # revoked after the message was received
        now = p.clock()
        try:
            if isinstance(msg, m.Bye):
                await self._bye(target_id, now)
                return True
            await self._contact(target_id, msg, now)
            if len(reports) > 1:
                return await self._report_group(target_id, reports)
            return await self._dispatch(target_id, msg)
        except StorageUnavailable as exc:
            # Nothing was acknowledged: the agent sends again after its timeout. Requests
            # get a "busy" answer so that the agent retries at once (§7).
            log.warning("storage unavailable handling %s from %s: %s", m.message_type(msg),
                        target_id, exc)  # fmt: skip
            reply = busy_reply(msg)
            if reply is not None:
                await p.transport.send(target_id, reply)
            return False

    async def _report_group(self, target_id: str, reports: Sequence[m.Message]) -> bool | None:
        group = [r for r in reports if isinstance(r, m.StateReport)]
        last, earlier = group[-1], [r.state for r in group[:-1]]
        outcome = await self._report(
            target_id, last.task_id, last.state, last.reason, earlier=earlier
        )
        if outcome is not None:
            return outcome
        outcomes = [await self._report(target_id, r.task_id, r.state, r.reason) for r in group]
        return False if False in outcomes else None

    def heartbeat_inline(self, target_id: str, msg: m.Message) -> bool:
        """Handle a ``heartbeat`` of an online target at once, without a worker job: it
        only records the contact time in memory (§6.1). ``False`` for anything else, and
        for a heartbeat that must go through :meth:`handle` (the target comes online)."""
        if not isinstance(msg, m.Heartbeat):
            return False
        p = self._p
        if not p.transport.is_allowed(target_id):
            return True  # revoked after the message was received: dropped
        return p.sessions.seen_quietly(target_id, p.clock())

    async def _contact(self, target_id: str, msg: m.Message, now: int) -> None:
        """§6.1. The contact time of most messages stays in memory (the link's sweep stores
        the due ones in one batch). So does a ``health`` report's document (and its history
        sample when one is due), unless it moves the device on the map; a ``hello``, a
        target coming online and a moving device are stored now."""
        p = self._p
        health = health_doc(msg, now) if isinstance(msg, m.Health) else None
        moved = health is not None and p.health.moved(target_id, health)
        contact = p.sessions.seen(target_id, now, force_write=isinstance(msg, m.Hello) or moved)
        if health is not None:
            sample = p.health.sample_due(target_id, now, health)
            if contact.write or not p.sessions.hold_health(target_id, health, sample):
                # Stored now, and held as well (without its sample): the next batch writes
                # it again, after any older document a batch in flight may still store.
                p.sessions.hold_health(target_id, health, None)
                await p.states.commits.touch(ContactWrite(target_id, now, health, sample))
            if sample is not None:  # stored, or held until it is (a failed write keeps it)
                p.health.sampled(target_id, now)
        elif contact.write:
            await p.states.commits.touch(ContactWrite(target_id, now))
        if moved and not contact.came_online:
            await self.publish_target(target_id)  # the map follows a moving device
        if contact.came_online:
            log.info("target %s is online", target_id)
            await self.publish_target(target_id)

    async def _dispatch(self, target_id: str, msg: m.Message) -> bool | None:
        p = self._p
        reply: m.Message | None = None
        if isinstance(msg, m.Hello):
            await self._hello(target_id, msg)
        elif isinstance(msg, m.StateReport):
            return await self._report(target_id, msg.task_id, msg.state, msg.reason)
        elif isinstance(msg, m.LogBatch):
            batch = await p.sequencer.receive(target_id, msg.entries, now=p.clock())
            reply = m.LogAck(upto_seq=batch.upto_seq)
        elif isinstance(msg, m.FetchTask):
            reply = await p.delivery.fetch(target_id, msg)
        elif isinstance(msg, m.ChunkRequest):
            reply = await p.delivery.chunk(target_id, msg)
        elif isinstance(msg, m.UploadOffer | m.UploadChunk):
            reply = await self._upload(target_id, msg)
        elif isinstance(msg, m.RequestAck):
            await p.requests.on_ack(target_id, msg)
        elif isinstance(msg, m.UnknownMessage):
            text = f"this manager does not know the message type {msg.type!r}"
            reply = m.Error(code="unsupported_type", message=text, in_reply_to=msg.type[:64])
        # heartbeat and health: the contact above is all they do
        if reply is None:
            return True
        if not await p.transport.send(target_id, reply):
            return False
        return None if isinstance(reply, m.Error) else True

    async def _hello(self, target_id: str, msg: m.Hello) -> None:
        p = self._p
        p.sessions.hello(target_id, boot_id=msg.boot_id, arch=msg.arch)
        highest = await p.sequencer.highest(target_id, agent_acked=msg.log_acked_seq, refresh=True)
        requests = await p.requests.open_requests(target_id)
        welcome = m.Welcome(
            log_acked_seq=highest,
            heartbeat_interval_s=p.settings.heartbeat_interval_s,
            server_time_ms=max(0, p.clock()),
            revocations=await p.revocations(),
            stops=open_stops(requests),
            compression=choose(msg.compression) if p.settings.compression else "",
        )
        await p.transport.send(target_id, welcome)
        for report in msg.tasks:
            await self._report(target_id, report.task_id, report.state, report.reason)
        await p.delivery.announce_pending(target_id)
        record = await p.storage.get_target(target_id)
        await p.requests.on_hello(target_id, record, msg.config_revision, requests)

    async def _report(
        self,
        target_id: str,
        task_id: str,
        state: TargetState,
        reason: str,
        *,
        earlier: list[TargetState] | None = None,
    ) -> bool | None:
        """§6.4: apply through the choke point, persist, then acknowledge. ``True`` when
        applied and acknowledged, ``None`` when refused (``ok=false``), ``False`` when the
        acknowledgement could not be handed to the connection. With ``earlier`` (reports of
        states before ``state`` that arrived with it): acknowledge those first when
        ``state`` is applied; when it is refused, send nothing and return ``None``."""
        p = self._p
        try:
            if state is TargetState.BUILT:
                await self._before_built(task_id, target_id)
            report = await p.states.report(task_id, target_id, state, reason=reason)
        except NotFoundError:
            ack = m.StateAck(
                task_id=task_id, state=state, ok=False, message="no such task for this target"
            )
        else:
            current = TargetState(report.row.state)
            ack = m.StateAck(
                task_id=task_id,
                state=state,
                ok=report.ok,
                current=None if report.ok else current,
                message="" if report.ok else f"the manager holds {current.value}",
            )
            if report.ok and report.row.role == "build":
                await self._build_progress(task_id, target_id, state, reason)
        p.delivery.invalidate(task_id, target_id)
        if earlier and not ack.ok:
            return None
        sent = True
        for before in earlier or ():
            sent &= await p.transport.send(
                target_id, m.StateAck(task_id=task_id, state=before, ok=True)
            )
        sent &= await p.transport.send(target_id, ack)
        if ack.ok and state is TargetState.BUILT:
            await p.on_built(task_id)
        return (True if ack.ok else None) if sent else False

    async def _before_built(self, task_id: str, target_id: str) -> None:
        """Record the build host's verified uploads as artifacts before ``built`` is stored."""
        row = await self._p.states.row(task_id, target_id)
        if row.role == "build":
            await self._p.builds.delivered(task_id, target_id)
            await self._p.sign_deploy(task_id)

    async def _build_progress(
        self, task_id: str, target_id: str, state: TargetState, reason: str
    ) -> None:
        if state is TargetState.BUILDING:
            await self._p.builds.started(task_id, target_id)
        elif state in BUILD_ENDED_BADLY:
            await self._p.builds.ended(task_id, target_id, state, reason)

    async def _upload(self, target_id: str, msg: m.UploadOffer | m.UploadChunk) -> m.Message:
        """§6.6: only the build host of a task, while it is ``building``, may upload."""
        p = self._p
        try:
            row = await p.states.row(msg.task_id, target_id)
        except NotFoundError:
            row = None
        if row is None or row.role != "build" or row.state != TargetState.BUILDING.value:
            is_chunk = isinstance(msg, m.UploadChunk)
            return m.Error(
                code="not_authorized",
                message=f"no build of task {msg.task_id} is running on this target",
                in_reply_to="upload_chunk" if is_chunk else "upload_offer",
                task_id=msg.task_id,
                sha256=msg.sha256,
                index=msg.index if isinstance(msg, m.UploadChunk) else -1,
            )
        if isinstance(msg, m.UploadOffer):
            return await p.uploads.offer(msg)
        return await p.uploads.chunk(msg)

    async def _bye(self, target_id: str, now: int) -> None:
        p = self._p
        was_online = p.sessions.bye(target_id, now)
        await p.states.commits.touch(ContactWrite(target_id, now))
        log.info("target %s said bye", target_id)
        if was_online:
            await self.publish_target(target_id)

    async def publish_target(self, target_id: str) -> None:
        """Publish ``targetUpdated`` with the target's current document."""
        p = self._p
        record = await p.storage.get_target(target_id)
        if record is not None:
            doc = target_json(p.registry.view(record))
            p.events.publish("targetUpdated", doc, target=target_id)
