"""The Deployment Agent daemon: ties the agent's parts to the wire protocol (docs/protocol.md).

:meth:`Daemon.run` goes through the start-up order of docs/adr/0003 (the process-wide
hardening -- umask, no core dumps -- is applied by the entry point before):

1. check the data dir and the required binaries (seed 000);
2. load the persisted state (or take the one the entry point loaded), attach the verifier
   (persisted sequences, the accepted revocation list) and detect the sandbox;
3. derive the resume plan, kill the previous run's leftovers;
4. report stages that an agent death interrupted, queue unfinished tasks;
5. connect the link and tell systemd ``READY=1``;
6. once the first ``welcome`` arrived (or after ``resume_wait_s`` without one), carry out the
   stops it names (tasks stopped while the agent was away, docs/protocol.md §6.2), then
   persist a fresh run id and start the current deployment's remaining run commands, once,
   and start the task processor's worker.

Then three loops run until :meth:`Daemon.request_shutdown`: the receive loop (every message
and link event, dispatched to the processor, the reporter, the collector and the request
handler; ``hello`` on every ``connected``), the timer loop (heartbeats, log batches,
re-sent reports, ``WATCHDOG=1``, and handing freed heap memory back to the system after
start-up and whenever a task settled -- running or final) and the independent health loop.
A clean shutdown stops every process the agent started (the deployment is restarted at the
next start), sends ``bye``, flushes the log spool and closes the link (``STOPPING=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

from swarmdeploy import __version__
from swarmdeploy.agent.apps import AppSupervisors
from swarmdeploy.agent.collector import ResponseCollector
from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.confine import Confinement
from swarmdeploy.agent.connectivity import ConnectivityCheck, proxy_address
from swarmdeploy.agent.context import AgentContext
from swarmdeploy.agent.errors import LifecycleError, StateCorruptError
from swarmdeploy.agent.fsutil import RESERVE_FILE, DiskReserve
from swarmdeploy.agent.gpsd import gps_tracker
from swarmdeploy.agent.grants import sandbox_grants
from swarmdeploy.agent.hardening import check_binaries, check_data_dir, release_free_memory
from swarmdeploy.agent.healthloop import HealthLoop
from swarmdeploy.agent.output import now_ms
from swarmdeploy.agent.processor import TaskProcessor
from swarmdeploy.agent.ranged import RangeSource
from swarmdeploy.agent.reports import StateReporter
from swarmdeploy.agent.request_trust import RequestTrust
from swarmdeploy.agent.requests import RequestHandler
from swarmdeploy.agent.resources import machine_arch
from swarmdeploy.agent.revoked import RevokedSigners
from swarmdeploy.agent.sandbox import SandboxConfig
from swarmdeploy.agent.sdnotify import Notifier, watchdog_interval_s
from swarmdeploy.agent.spool import LogSpool, RecentLines
from swarmdeploy.agent.state import (
    AgentState,
    kill_leftovers,
    load_state,
    resume_plan,
    save_state,
)
from swarmdeploy.agent.terminal import Terminal
from swarmdeploy.agent.trust import Verifier
from swarmdeploy.protocol.compression import ALGORITHMS as COMPRESSION
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    Announce,
    Bye,
    Chunk,
    Config,
    Error,
    Heartbeat,
    Hello,
    Hint,
    LogAck,
    LogRequest,
    Message,
    StateAck,
    Stop,
    Task,
    TerminalCommand,
    TerminalStop,
    UploadAck,
    Welcome,
)
from swarmdeploy.protocol.states import FINAL_STATES, TargetState
from swarmdeploy.transport.base import AgentTransport, Lifecycle, LinkEvent, LinkState

logger = logging.getLogger(__name__)
SPOOL_FILE = "spool.bin"
#: Size of the space kept for the agent's own writes on a full disk (fsutil.DiskReserve).
RESERVE_BYTES = 1 << 20
#: How long a starting agent waits for the manager's first ``welcome`` (which names tasks
#: stopped meanwhile) before it restarts the deployment anyway (docs/reliability.md).
RESUME_WAIT_S = 10.0
#: How often the timer loop retries a failed state save and re-allocates the reserve.
_DISK_RETRY_S = 2.0
_REQUESTS = (Stop, LogRequest, TerminalCommand, TerminalStop, Config)
#: A task in one of these states has finished its transient work (transfer, unpack, install).
_SETTLED = FINAL_STATES | {TargetState.RUNNING}


class DaemonState(enum.StrEnum):
    """Lifecycle of a :class:`Daemon` (one-shot)."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Daemon:
    """One agent process's daemon. ``state`` None: load it from ``settings.state_path``.

    ``verifier`` checks signed tasks (default: no anchors, i.e. every task is declined
    unless ``settings.insecure_lab``); ``sandbox`` None: detect it at start
    (:meth:`SandboxConfig.detect` with the data dir hidden). ``manager`` is the (host, port)
    the health loop checks while the link is down. ``release_memory`` hands freed heap back
    to the system (default :func:`~swarmdeploy.agent.hardening.release_free_memory`).
    """

    def __init__(
        self,
        settings: AgentSettings,
        transport: AgentTransport,
        *,
        state: AgentState | None = None,
        verifier: Verifier | None = None,
        sandbox: SandboxConfig | None = None,
        notifier: Notifier | None = None,
        manager: tuple[str, int] = ("127.0.0.1", 5557),
        release_memory: Callable[[], object] = release_free_memory,
        resume_wait_s: float = RESUME_WAIT_S,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self._given_state = state
        self.verifier = verifier or Verifier(None, insecure_lab=settings.insecure_lab)
        self._sandbox = sandbox
        self._notifier = notifier or Notifier(None)
        self._manager = manager
        self._lifecycle = DaemonState.NEW
        self._stop = asyncio.Event()
        self._running = asyncio.Event()
        self._welcomed = False
        self._heartbeat_s = settings.heartbeat_s
        self._boot_id = os.urandom(8).hex()
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._built = False
        self._release_memory = release_memory
        self._trim_due = False
        self._first_welcome = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resume_wait_s = resume_wait_s
        #: The manager refused our key while a (new) token was given: enrol again.
        self.reenrol_needed = False

    @property
    def lifecycle(self) -> DaemonState:
        """Where the daemon is in ``new -> starting -> running -> stopping -> stopped``."""
        return self._lifecycle

    async def wait_running(self) -> None:
        """Wait until start-up is complete (READY=1 was sent)."""
        await self._running.wait()

    async def wait_resumed(self) -> None:
        """Wait until the deployment was resumed after the first ``welcome`` (start-up
        step 6) and the task processor's worker runs."""
        await self._resumed.wait()

    def request_shutdown(self) -> None:
        """Ask :meth:`run` to shut down cleanly (safe from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Start up, serve until :meth:`request_shutdown`, shut down. Only once."""
        if self._lifecycle is not DaemonState.NEW:
            raise LifecycleError(f"the daemon cannot run in state {self._lifecycle}")
        self._lifecycle = DaemonState.STARTING
        try:
            await self._start()
            self._lifecycle = DaemonState.RUNNING
            self._running.set()
            await self._stop.wait()
        finally:
            await self._shutdown()

    # --- start-up (docs/adr/0003) --------------------------------------------------------

    async def _start(self) -> None:
        s = self.settings
        check_data_dir(s.data_dir)
        check_binaries()
        state = self._given_state or load_state(s.state_path)
        if state is None:
            raise StateCorruptError(f"no agent state in {s.state_path}: register first")
        self.state = state
        self.reserve = DiskReserve(s.data_dir / RESERVE_FILE, RESERVE_BYTES)
        if not self.reserve.restore():
            logger.error("the disk of %s is full: no room for the agent's reserve", s.data_dir)
        self.verifier.attach(
            state, lambda: save_state(s.state_path, state, self.reserve), s.data_dir
        )
        sandbox = self._sandbox
        if sandbox is None:
            sandbox = await asyncio.to_thread(
                SandboxConfig.detect,
                hidden=[s.data_dir],
                grants=sandbox_grants(s),
                seccomp_dir=s.data_dir,
                reserve=self.reserve,
            )
        self.confinement = Confinement(sandbox)
        self.confinement.warn_if_degraded()
        self._build(state)
        plan = resume_plan(state)
        if not await kill_leftovers(plan, s.stop_grace_s):
            logger.error("some processes of the previous agent run survived SIGKILL")
        await self.processor.resume()
        await self.transport.set_tags(state.tags)
        await self.transport.connect()
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._receive_loop(), name="agent-receive"),
            loop.create_task(self._timer_loop(), name="agent-timers"),
            loop.create_task(self.health.run(), name="agent-health"),
            loop.create_task(self.connectivity.run(s.health_interval_s), name="agent-connectivity"),
        ]
        if self.gps is not None:
            self._loops.append(loop.create_task(self.gps.run(), name="agent-gpsd"))
        self._spawn(self._resume_after_welcome(plan.app_starts))
        self._trim_due = True  # start-up's transient memory
        self._notifier.ready(f"agent {state.agent_id} started, connecting")
        logger.info("agent %s started (boot %s)", state.agent_id, self._boot_id)

    async def _resume_after_welcome(self, starts: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
        """docs/adr/0003 step 5, once the first ``welcome`` told which tasks were stopped
        while the agent was away (§6.2 ``stops``) -- or after ``resume_wait_s`` without a
        manager: a device runs its deployment offline too."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._resume_wait_s):
                await self._first_welcome.wait()
        self._first_welcome.set()  # a later welcome's stops are left to the stop requests
        await self.deployments.resume(starts)
        self.processor.start()
        self._resumed.set()

    async def _welcome_stops(self, stops: list[str]) -> None:
        """Carry out the stops a first ``welcome`` names before anything is (re)started; the
        stop requests that follow are then acknowledged as done (nothing left to stop)."""
        for task_id in stops:
            stopped = await self.processor.stop(task_id or None, "stopped by the operator")
            if stopped:
                logger.info("stopped %s while away: not restarted", ", ".join(stopped))

    def _build(self, state: AgentState) -> None:
        s = self.settings
        self.spool = LogSpool(s.data_dir / SPOOL_FILE)
        self.reporter = StateReporter(state, self._save, self.send, s.resend_s)
        self.collector = ResponseCollector(
            self.spool,
            RecentLines(),
            self.send,
            batch_s=s.log_batch_s,
            resend_s=s.resend_s,
            reserve=self.reserve,
        )
        self.ctx = AgentContext(
            s, state, self.reporter, self.collector, self.send, reserve=self.reserve
        )
        self.gps = gps_tracker(s, lambda: self.health.nudge())
        gps = self.gps
        self.health = HealthLoop(
            s.data_dir,
            self.ctx.disk_policy(),
            self.send,
            connected=self._connected,
            manager=self._manager,
            interval_s=s.health_interval_s,
            extra=self.health_extra,
            position=(lambda: gps.reported) if gps is not None else lambda: None,
        )
        self.connectivity = ConnectivityCheck(
            s.connectivity_hosts, proxy=proxy_address(s.proxy), manager_connected=self._connected
        )
        self.deployments = AppSupervisors(self.ctx, self.verifier, self.confinement)
        self.processor = TaskProcessor(
            self.ctx,
            self.deployments,
            self.verifier,
            self.confinement,
            fetch_paused=lambda: self.health.disk_low or not self.connectivity.ok,
            before_fetch=self._check_connectivity,
            ranged=self.transport if isinstance(self.transport, RangeSource) else None,
        )
        self.revoked = RevokedSigners(
            self.ctx, self.deployments, self.processor, changed=lambda: self.health.nudge()
        )
        self.terminal = Terminal(self.ctx, self.confinement)
        trust = RequestTrust(self.verifier, state, self._save)
        self.requests = RequestHandler(
            self.ctx, self.processor, self.terminal, self._set_tags, trust
        )
        self._built = True

    def _save(self) -> None:
        self.ctx.save()

    async def _check_connectivity(self) -> None:
        if self.settings.connectivity_hosts:
            await self.connectivity.check()

    def health_extra(self) -> dict[str, Any]:
        """The optional fields of ``health``: :meth:`security_report`, ``transport`` (the
        link this agent speaks: ``zmq`` or ``http``) and ``connectivity``
        (:mod:`~swarmdeploy.agent.connectivity`) when ``--connectivity-hosts`` is set."""
        extra = self.security_report()
        extra["transport"] = self.settings.transport
        connectivity = self.connectivity.report()
        if connectivity is not None:
            extra["connectivity"] = connectivity
        return extra

    def security_report(self) -> dict[str, Any]:
        """The optional fields ``hello`` and ``health`` carry (kept by the manager as
        unknown fields, docs/protocol.md §2): ``insecure_lab`` (bool) and ``security``
        (verification mode, anchor fingerprints, revocation list number, last sequences,
        sandbox kind, the device's terminal and revoked-signer policies, running deployments
        whose signer is revoked) -- see docs/security.md."""
        return {
            "insecure_lab": self.verifier.insecure_lab,
            "security": {
                **self.verifier.status(),
                "sandbox": self.confinement.kind,
                "confinement": self.confinement.config.report(),
                "terminal": self.settings.terminal,
                "on_revoked": self.settings.on_revoked,
                "signer_revoked": self.revoked.report(),
            },
        }

    async def _set_tags(self, tags: list[str]) -> None:
        await self.transport.set_tags(tags)

    # --- sending ---------------------------------------------------------------------

    def _connected(self) -> bool:
        return self.transport.lifecycle is Lifecycle.OPEN and (
            self.transport.state is LinkState.CONNECTED
        )

    async def send(self, msg: Message) -> bool:
        """Send if connected; False otherwise (acks and reconciliation recover, §6)."""
        if not self._connected():
            return False
        try:
            return await self.transport.send(msg)
        except MessageError:  # our bug: log it, never crash the loop that sent it
            logger.exception("could not encode a %s message", type(msg).__name__)
            return False

    async def _hello(self) -> None:
        hello = Hello(
            agent_version=__version__,
            boot_id=self._boot_id,
            arch=machine_arch()[:64],
            tasks=self.reporter.hello_tasks(),
            log_acked_seq=self.spool.acked_seq,
            config_revision=self.state.config_revision,
            compression=list(COMPRESSION),  # large messages may go compressed (§2.1)
            extra=self.security_report(),
        )
        if await self.send(hello):
            self.reporter.sent_with_hello()

    # --- receiving -------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            item = await self.transport.recv()
            if item is None:
                continue
            try:
                await self._dispatch(item)
            except Exception:  # top of the loop: one bad message must not stop the agent
                logger.exception("handling %s failed", type(item).__name__)

    async def _dispatch(self, item: Message | LinkEvent) -> None:
        if isinstance(item, LinkEvent):
            await self._on_link(item)
        elif isinstance(item, Welcome):
            if not self._first_welcome.is_set():
                await self._welcome_stops(item.stops)
                self._first_welcome.set()
            self.collector.on_welcome(item.log_acked_seq)
            self.verifier.observe_server_time(item.server_time_ms)
            self._apply_revocations(item.revocations)
            self._heartbeat_s = item.heartbeat_interval_s
            self._welcomed = True
            self.health.nudge()
            self._notifier.status(f"agent {self.state.agent_id} connected")
        elif isinstance(item, Announce):
            await self.processor.on_announce(item)
        elif isinstance(item, Task):
            self.processor.on_task(item)
        elif isinstance(item, Chunk):
            self.processor.on_chunk(item)
        elif isinstance(item, StateAck):
            self._on_state_ack(item)
        elif isinstance(item, LogAck):
            self.collector.on_ack(item.upto_seq)
        elif isinstance(item, UploadAck):
            self.processor.on_upload_ack(item)
        elif isinstance(item, _REQUESTS):
            self.requests.handle(item)
        elif isinstance(item, Error):
            if not self.processor.on_error(item):
                logger.warning("manager error %s in reply to %r: %s", item.code,
                               item.in_reply_to, item.message)  # fmt: skip
        elif isinstance(item, Hint):
            await self._hello()
        else:
            logger.info("ignoring a %r message (from a newer manager?)", getattr(item, "type", ""))

    def _apply_revocations(self, data: bytes) -> None:
        """Apply the CA-signed revocation list a ``welcome`` carries (empty: none). A list
        that does not verify or is older than the accepted one is logged and ignored: the
        agent keeps the list it has."""
        if not data:
            return
        from swarmdeploy.crypto.rejections import VerificationError

        before = self.verifier.trust.revocation_number
        try:
            number = self.verifier.apply_revocation_list(data)
        except VerificationError as exc:
            logger.warning("revocation list from the manager refused: %s", exc)
            return
        if number != before:
            self._spawn(self.revoked.check())

    async def _on_link(self, event: LinkEvent) -> None:
        self._welcomed = False
        if event.state is LinkState.CONNECTED:
            logger.info("connected to the manager")
            if self.state.refused_at_ms:  # accepted again (the refusal was transient)
                self.state.refused_at_ms = 0
                self.ctx.save()
            await self._hello()
            self.processor.on_reconnect()
        elif event.state is LinkState.AUTH_FAILED:
            self._refused()
        elif event.state is LinkState.HANDSHAKE_FAILED:
            logger.error("handshake with the manager failed: %s", event.detail)
        elif event.state is LinkState.CONNECTING and event.detail:
            logger.info("link to the manager lost (%s); reconnecting", event.detail)

    def _refused(self) -> None:
        """The manager refused our key: the target was deleted (``agent/reenrol.py``). Said
        once per streak of refusals, persisted so that a start with a new token enrols a new
        identity; with a token given at this start (unused) the agent stops to do so."""
        from swarmdeploy.agent.reenrol import REVOKED_MESSAGE, mark_refused

        if mark_refused(self.state):
            logger.error(REVOKED_MESSAGE, self.state.agent_id)
            self._notifier.status("revoked by the manager: needs a new registration token")
            self.ctx.save()
        if self.settings.token:
            self.reenrol_needed = True
            self.request_shutdown()

    def _on_state_ack(self, ack: StateAck) -> None:
        self.reporter.on_ack(ack)
        if ack.ok:
            self._trim_due = self._trim_due or ack.state in _SETTLED
            return
        logger.warning("manager refused report %s of task %s (holds %s): %s", ack.state,
                       ack.task_id, ack.current, ack.message)  # fmt: skip
        if ack.current is not None:
            self._spawn(self.processor.on_refused(ack.task_id, ack.current))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- timers ----------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        tick_s = min(0.5, self.settings.log_batch_s / 2)
        watchdog_s = watchdog_interval_s()
        last_beat = last_dog = last_disk = 0.0
        while True:
            try:
                now = time.monotonic()
                ready = self._connected() and self._welcomed
                if ready and now - last_beat >= self._heartbeat_s:
                    last_beat = now
                    await self.send(Heartbeat(sent_at_ms=now_ms()))
                await self.collector.tick(ready)
                if ready:
                    await self.reporter.resend_due()
                if watchdog_s is not None and now - last_dog >= watchdog_s / 2:
                    last_dog = now
                    self._notifier.watchdog()
                if self._trim_due:
                    self._trim_due = False
                    self._release_memory()
                if now - last_disk >= _DISK_RETRY_S:
                    last_disk = now
                    self._disk_retry()
            except Exception:  # top of the loop
                logger.exception("timer loop iteration failed")
            await asyncio.sleep(tick_s)

    def _disk_retry(self) -> None:
        """After a full disk: save the state kept in memory, allocate the reserve again,
        spool the count of lines that could not be spooled (docs/reliability.md)."""
        if self.ctx.save_failed:
            self.ctx.save()
        if not self.reserve.held and not self.ctx.save_failed:
            self.reserve.restore()
        self.collector.report_lost()

    # --- shutdown --------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if self._lifecycle is DaemonState.STOPPED:
            return
        self._lifecycle = DaemonState.STOPPING
        self._notifier.stopping()
        for task in [*self._loops, *self._background]:
            task.cancel()
        for task in [*self._loops, *self._background]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._built:
            await self._stop_everything()
        with contextlib.suppress(Exception):
            await self.transport.close(linger_s=1.0)
        self._lifecycle = DaemonState.STOPPED
        logger.info("agent stopped")

    async def _stop_everything(self) -> None:
        """No process the agent started survives it; the deployment restarts next time."""
        await self.requests.close()
        await self.terminal.stop()
        await self.processor.close()
        await self.deployments.shutdown()
        await self.collector.tick(self._connected() and self._welcomed)
        if await self.send(Bye(reason="agent shutting down")):
            logger.info("said bye to the manager")
        else:  # the manager marks this agent offline after its online timeout instead
            logger.warning("could not say bye: the link to the manager is not connected")
        self.collector.flush()
        self.spool.close()
