"""The Deployment Manager's side of the agent link: the transport server.

:class:`LinkServer` connects the manager's services to agents through a
:class:`~swarmdeploy.transport.base.ManagerTransport` (CurveZMQ in production, in-memory in
tests). Start-up order (docs/protocol.md §3): every registered target's CurveZMQ key enters
the allow-list *before* the transport binds. Then:

* one loop receives authenticated messages and queues each on its target's serial worker
  (:mod:`.workers`), where :class:`~.handlers.AgentHandlers` handles it (a heartbeat of an
  online target with nothing queued is recorded at once: it only moves the contact time;
  an exact re-send is answered once while the link is behind, and state reports that
  arrive together are one job, docs/adr/0014-answer-a-resend-once.md);
* one loop sweeps sessions (online -> offline after the timeout, ``targetUpdated``),
  expires terminal requests of absent targets and, every ``maintenance_interval_s``, purges
  answered requests and partial uploads nobody will finish (:meth:`LinkServer.maintain`);
* service hooks: registrations ``allow`` keys, deletions ``revoke`` them (and stop the
  target's unfinished rows), API updates push ``config``, new tasks are announced at once to
  connected targets (plus best-effort hints by id and tag, §6.9), and the link is the
  dispatcher's sink: requests submitted by the API are stored and delivered at once to
  connected targets (the wake-up). A new task's announcements are queued behind the answer
  to ``POST /tasks`` and sent in paced waves (:mod:`.announcer`).
* what a live deployment needs stays in memory (docs/adr/0011-live-deployments-and-group-commit.md):
  a changed row drops its delivery grant, a stop, a deletion or a revocation drops the
  task's or every task's cached checks, and the revocation list sent in ``welcome`` is
  built again only after a revocation.

What lives where -- storage or this process -- is recorded in
``docs/adr/0005-manager-link-state.md``: everything another replica (or this one after a
restart) needs is in storage; sessions, routes, caches and worker queues are in memory.

Lifecycle: ``new -> running -> closed``; calls in the wrong state raise ``LinkStateError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import ManagerError, NotFoundError
from swarmdeploy.manager.link.announcer import Announcer, LoopLag
from swarmdeploy.manager.link.config import LinkSettings
from swarmdeploy.manager.link.delivery import Delivery
from swarmdeploy.manager.link.handlers import AgentHandlers, Parts, ReportGroup
from swarmdeploy.manager.link.logs import LogSequencer
from swarmdeploy.manager.link.metered import MeteredTransport
from swarmdeploy.manager.link.packages import Packages
from swarmdeploy.manager.link.requests import RequestService
from swarmdeploy.manager.link.sessions import Sessions
from swarmdeploy.manager.link.uploads import UploadReceiver
from swarmdeploy.manager.link.workers import Job, TargetWorkers, message_key
from swarmdeploy.manager.services.builds import BuildRecorder
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.services.tasks import TaskView
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.messages import (
    Hello,
    Hint,
    Message,
    StateReport,
    id_topic,
    message_type,
    tag_topic,
)
from swarmdeploy.protocol.states import FINAL_STATES, TargetEvent, TargetState
from swarmdeploy.storage.errors import StorageUnavailable
from swarmdeploy.storage.records import TargetRecord, TaskTargetRecord, WriteBatch
from swarmdeploy.transport.base import ManagerTransport
from swarmdeploy.transport.errors import TransportClosed, TransportConfigError

log = logging.getLogger(__name__)

#: Row states after which the task's cached record and checks are dropped (stopped).
_STOP_STATES = frozenset({TargetState.STOPPED.value})


def _takes(job: Job, msg: StateReport) -> bool:
    """Whether ``job`` is a waiting report group that takes ``msg`` in."""
    return isinstance(job, ReportGroup) and job.take(msg)


class LinkState(enum.StrEnum):
    """``new -> running -> closed``; nothing goes back."""

    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class LinkStateError(RuntimeError):
    """A call the link server's lifecycle does not allow (a programming error)."""


class LinkServer:
    """Serves agents for one manager (see the module docstring)."""

    def __init__(
        self,
        services: Services,
        transport: ManagerTransport,
        settings: LinkSettings,
        *,
        clock: Clock,
    ) -> None:
        s = services
        self.services = services
        self.transport = transport
        sender = MeteredTransport(transport, s.metrics)
        self.settings = settings
        self.state = LinkState.NEW
        self._clock = clock
        self.sessions = Sessions(
            online_timeout_ms=settings.online_timeout_ms,
            touch_interval_ms=settings.touch_interval_ms,
        )
        self.workers = TargetWorkers(max_queued=settings.queue_per_target, metrics=s.metrics)
        self.uploads = UploadReceiver(
            settings.uploads_dir,
            s.storage,
            s.blobs,
            chunk_bytes=settings.chunk_bytes,
            max_upload_bytes=settings.max_upload_bytes,
            clock=clock,
        )
        packages = Packages(s.storage, s.blobs, clock=clock, ttl_ms=settings.auth_cache_ms)
        self.delivery = Delivery(
            s.storage,
            states=s.task_states,
            packages=packages,
            blobs=s.blobs,
            transport=sender,
            clock=clock,
            grant_ttl_ms=settings.auth_cache_ms,
            gate=s.tasks.rollouts.admits,
        )
        self.sequencer = LogSequencer(s.storage, s.logs, states=s.task_states)
        self.lag = LoopLag()
        self.announcer = Announcer(
            self.workers,
            self._announce,
            wave=settings.announce_wave,
            max_active=settings.max_transferring,
            behind=self._behind,
        )
        self._crl: bytes | None = None  # the revocation list for welcome, until a revocation
        self.requests = RequestService(
            s.storage,
            transport=sender,
            sessions=self.sessions,
            logs=s.logs,
            states=s.task_states,
            clock=clock,
            terminal_expiry_ms=settings.terminal_expiry_ms,
            wake=self._wake,
            metrics=s.metrics,
        )
        self.handlers = AgentHandlers(
            Parts(
                storage=s.storage,
                transport=sender,
                events=s.events,
                registry=s.registry,
                states=s.task_states,
                sessions=self.sessions,
                sequencer=self.sequencer,
                delivery=self.delivery,
                requests=self.requests,
                uploads=self.uploads,
                builds=BuildRecorder(s.storage, states=s.task_states, clock=clock),
                settings=settings,
                clock=clock,
                on_built=self._announce_build_result,
                revocations=self._revocations,
                sign_deploy=self._sign_deploy,
                health=s.health,
            )
        )
        self._sender = sender
        self._loops: list[asyncio.Task[None]] = []
        self._maintained_ms: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Fill the allow-list from storage, start the transport, hook into the services and
        start the loops. Raises ``BindError`` when the sockets cannot be bound."""
        if self.state is not LinkState.NEW:
            raise LinkStateError(f"the link server is {self.state.value}; it starts only once")
        s = self.services
        keys = await s.storage.target_curve_keys()
        for target_id, key in keys:
            try:
                await self.transport.allow(target_id, key)
            except TransportConfigError as exc:
                log.error("target %s is not admitted: %s", target_id, exc)
        await self.transport.start()
        self.state = LinkState.RUNNING
        s.registry.add_listener(self)
        s.registry.add_update_listener(self)
        s.registry.set_presence(self.sessions)
        s.tasks.add_listener(self)
        s.tasks.add_delete_listener(self)
        s.task_states.add_change_listener(self._row_changed)
        s.operator_keys.add_revocation_listener(self.keys_revoked)
        await s.dispatcher.attach(self.requests)
        s.metrics.add_probe(self.workers.observe)
        s.metrics.add_probe(self._observe_wire)
        self._loops = [
            asyncio.create_task(self._receive_loop(), name="link:receive"),
            asyncio.create_task(self._sweep_loop(), name="link:sweep"),
            asyncio.create_task(self.lag.run(), name="link:lag"),
        ]
        log.info("agent link started (%d target key(s) admitted)", len(keys))

    def _behind(self) -> float:
        """Seconds the link is behind: the event loop's lag or the recent latency of the
        targets' jobs, whichever is longer (paces the announcer)."""
        return max(self.lag.lag_s, self.workers.latency_s())

    def _observe_wire(self) -> None:
        if self.transport.wire is not None:
            self.services.metrics.observe_wire(self.transport.wire)

    async def close(self) -> None:
        """Stop the loops and workers and close the transport. Idempotent."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        await self.services.dispatcher.attach(None)
        self.services.metrics.remove_probe(self.workers.observe)
        self.services.metrics.remove_probe(self._observe_wire)
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.announcer.close()
        await self.workers.close()
        try:
            await self.store_contacts(self._clock(), every=True)
        except Exception:  # stopping anyway: the next start begins from the stored times
            log.exception("could not store the last contact times")
        try:
            await self.services.task_states.commits.drain()
        except TimeoutError:
            log.warning("writes still queued for storage when the agent link stopped")
        await self.transport.close()
        log.info("agent link stopped")

    # -- loops ---------------------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        while True:
            try:
                got = await self.transport.recv()
            except TransportClosed:
                return
            except Exception:  # top of the loop: log, pause, go on
                log.exception("receiving from the agent link failed")
                await asyncio.sleep(0.5)
                continue
            if got is None:
                continue
            target_id, msg = got
            self.services.metrics.count_received(message_type(msg))
            self._queue(target_id, msg)

    def _queue(self, target_id: str, msg: Message) -> None:
        """Hand one received message to its target's worker (:mod:`.workers`): exact
        re-sends are answered once, a state report joins the report group waiting at the
        tail of the queue, a ``hello`` serves every later copy again."""
        workers = self.workers
        if not workers.busy(target_id) and self.handlers.heartbeat_inline(target_id, msg):
            return  # an idle target's heartbeat: recorded in memory, no job
        if isinstance(msg, Hello):
            workers.forget_served(target_id)
        key = message_key(msg)
        job: Job
        if isinstance(msg, StateReport):
            if workers.join_tail(target_id, key, lambda j: _takes(j, msg)):
                return
            job = ReportGroup(self.handlers, target_id, msg)
        else:
            job = functools.partial(self.handlers.handle, target_id, msg)
        workers.submit(target_id, job, key=key)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # top of the loop: log and go on
                log.exception("link sweep failed")

    async def sweep(self) -> None:
        """Mark silent targets offline (``targetUpdated``), expire terminal requests of
        absent targets, and run :meth:`maintain` when it is due. Runs every
        ``sweep_interval_s``."""
        now = self._clock()
        await self.store_contacts(now)
        for target_id in self.sessions.sweep(now):
            log.info("target %s is offline (silent for too long)", target_id)
            await self.handlers.publish_target(target_id)
        await self.requests.expire_absent()
        due = self._maintained_ms is None or (
            now - self._maintained_ms >= self.settings.maintenance_interval_s * 1000
        )
        if due:
            self._maintained_ms = now
            await self.maintain()

    async def store_contacts(self, now: int, *, every: bool = False) -> None:
        """Store the contact times and health reports held only in memory (heartbeats and
        the like) in one transaction, once per touch interval (``every``: now, whatever is
        unstored). A storage failure is logged; those writes are stored by a later call."""
        due = self.sessions.due_writes(now, force=every)
        if not due:
            return
        try:
            await self.services.storage.commit_batch(WriteBatch(contacts=due))
        except StorageUnavailable as exc:
            log.warning("could not store %d contact time(s): %s", len(due), exc)
            return
        for write in due:
            self.sessions.written(write)

    async def maintain(self) -> None:
        """Retention: delete answered requests older than ``request_retention_s`` and the
        partial files of uploads without an unfinished record (their task was deleted, or
        they were completed or discarded)."""
        older_than = self._clock() - int(self.settings.request_retention_s * 1000)
        purged = await self.services.storage.purge_requests(older_than=older_than)
        removed = await self.uploads.remove_orphans()
        if purged or removed:
            log.info("link maintenance: %d old request(s), %d partial upload(s)", purged, removed)

    # -- service hooks -------------------------------------------------------------------------
    def _wake(self, target_id: str) -> None:
        """A request was stored for the target: deliver it now if the target is connected
        here (otherwise at its next ``hello``)."""
        if self.sessions.is_online(target_id):
            self.workers.submit(target_id, functools.partial(self.requests.deliver, target_id))

    async def task_created(self, view: TaskView) -> None:
        """Announce a new task to its connected targets and hint the others (§6.9)."""
        if self.state is not LinkState.RUNNING:
            return
        task_id = view.record.id
        self.services.task_states.remember(view.targets)
        self._announce_later(task_id, [row.target_id for row in view.targets])
        # Hints only where a target is not known to be connected: a connected one has the
        # announcement already, and its answering hello would just repeat it.
        absent = {r.target_id for r in view.targets if not self.sessions.is_online(r.target_id)}
        ids = sorted(absent & ({r.target_id for r in view.targets if r.role == "build"}
                               | set(view.record.match_ids)))  # fmt: skip
        topics = [id_topic(t) for t in ids]
        if absent - set(ids):
            topics += [tag_topic(t) for t in view.record.match_tags]
        hint = Hint(reason="task", task_id=task_id)
        for topic in topics:
            await self._sender.publish(topic, hint)

    async def keys_revoked(self) -> None:
        """An operator key was revoked: check every task's package again before anything
        more of it is sent, and hint every connected agent, whose answering ``hello`` gets
        the new revocation list in ``welcome`` (the others at their next)."""
        self._crl = None
        self.delivery.forget_all()
        if self.state is not LinkState.RUNNING:
            return
        hint = Hint(reason="revocation")
        for target_id in self.sessions.online_ids():
            await self._sender.publish(id_topic(target_id), hint)

    async def _revocations(self) -> bytes:
        """The revocation list ``welcome`` carries, built once per revocation."""
        crl = self._crl
        if crl is None:
            crl = await self.services.operator_keys.revocations_for_agents()
            self._crl = crl
        return crl

    def _row_changed(self, row: TaskTargetRecord) -> None:
        """A (task, target) row changed: its delivery grant is checked again; a stopped
        task's record is read again."""
        self.delivery.invalidate(row.task_id, row.target_id)
        self.announcer.row_changed(row.task_id, row.target_id, row.state)
        if row.state in _STOP_STATES:
            self.delivery.forget_task(row.task_id)

    async def task_stopped(self, task_id: str) -> None:
        """The task was stopped: nothing more of it leaves without a fresh check."""
        self.delivery.forget_task(task_id)

    async def task_deleted(self, task_id: str, digests: frozenset[str]) -> None:
        """Forget everything cached about a deleted task."""
        del digests  # the blob collector's business
        self.delivery.forget_task(task_id)
        self.services.task_states.forget_task(task_id)

    def _announce_later(self, task_id: str, target_ids: list[str]) -> None:
        online = [t for t in target_ids if self.sessions.is_online(t)]
        if online:
            self.announcer.add(task_id, online)

    async def _announce(self, task_id: str, target_id: str) -> bool:
        return await self.delivery.announce(task_id, target_id)

    async def _sign_deploy(self, task_id: str) -> None:
        """The build host delivered: sign the deploy manifest over its artifacts with the
        submitter's key. A revoked key is logged; the deploy targets then get no manifest."""
        task = await self.services.storage.get_task(task_id)
        if task is None:
            return
        try:
            await self.services.task_signer.sign_deploy(task)
        except ManagerError as exc:
            log.warning("task %s: the deploy manifest is not signed: %s", task_id, exc)

    async def _announce_build_result(self, task_id: str) -> None:
        """The build host delivered: announce the task to its deploy targets."""
        rows = await self.services.storage.task_targets(task_id)
        self.services.task_states.remember(rows)
        waiting = [r.target_id for r in rows if r.role == "deploy" and r.state == "pending"]
        self._announce_later(task_id, waiting)

    async def target_registered(self, target: TargetRecord) -> None:
        """Admit the new target's CurveZMQ key."""
        if self.state is LinkState.RUNNING:
            await self.transport.allow(target.id, target.curve_key)

    async def target_updated(self, target: TargetRecord) -> None:
        """Push the new configuration to a connected target (others get it at ``hello``)."""
        if self.state is LinkState.RUNNING and self.sessions.is_online(target.id):
            self.workers.submit(target.id, functools.partial(self.requests.push_config, target))

    async def target_revoked(self, target: TargetRecord) -> None:
        """Drop the key and the connection at once (§3), forget the target's state and stop
        its unfinished task rows."""
        if self.state is not LinkState.RUNNING:
            return
        await self.transport.revoke(target.id)
        self.sessions.forget(target.id)
        self.sequencer.forget(target.id)
        self.services.health.forget(target.id)
        states = self.services.task_states
        for row in await self.services.storage.target_tasks(target.id):
            if TargetState(row.state) in FINAL_STATES:
                continue
            try:
                await states.apply(
                    row.task_id, target.id, TargetEvent.STOP, reason="target deleted"
                )
            except (NotFoundError, TransitionError) as exc:
                log.warning("could not stop task %s on deleted %s: %s", row.task_id, target.id, exc)
