"""Lightweight simulated agents for ``swarmdeploy simulate`` and ``python -m bench fleet``:
many in one asyncio process.

Each :class:`SimAgent` has its own CurveZMQ key pair and Ed25519 identity key, registers
through the real ``POST /rpc/targets`` with a one-time token (waiting out ``429`` like the
real agent) and talks to the manager over the real agent-side transport
(:class:`~swarmdeploy.transport.zmq.ZmqAgentTransport`, or
:class:`~swarmdeploy.transport.http_agent.HttpAgentTransport` with ``transport="http"``:
chunks are then pulled with ``chunk_request`` messages over the polls, not with the real
HTTP agent's ranged downloads), following ``docs/protocol.md``
like the real agent does:

* ``hello`` on every ``connected`` link event and in answer to a ``hint``; ``heartbeat`` at
  the interval ``welcome`` gives; ``health`` (with the security summary the real agent adds)
  at once and then every ``health_s``;
* ``announce``: assessed (architecture, size) and answered with ``state accepted``; after the
  ``state_ack`` the signed manifest is fetched (``fetch_task``) and checked with
  :func:`~swarmdeploy.crypto.signing.verify_task` against the manager's ``ca.pem`` (the last
  accepted sequence is kept per task kind, so a replayed or older task is refused);
* ``transferring``: every chunk pulled with a window of outstanding ``chunk_request`` (re-sent
  after ``resend_s`` or a reconnect), its length checked, the artifact's SHA-256 compared with
  the signed manifest; then ``installing`` and, after the simulated install time
  (``SimSettings.install_s``), either ``install_failed`` with a reason (for the share
  ``SimSettings.failure_rate`` of installs, drawn per install) or ``installed``, ``running``
  (after :func:`~swarmdeploy.crypto.signing.verify_installed`, as before a real start) and
  ``exited`` -- nothing is unpacked or run. Every state report is re-sent until acknowledged.
* the stage markers a real agent spools are sent as one ``log`` batch, re-sent until
  ``log_ack``.

Nothing is written to disk. :class:`~swarmdeploy.simulate.state.Progress` counts what all
agents did; callers wait on it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import platform
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
from nacl.signing import SigningKey

from swarmdeploy import __version__
from swarmdeploy.agent.backoff import Backoff
from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.crypto.operator import verify_revocation_list
from swarmdeploy.crypto.rejections import VerificationError
from swarmdeploy.crypto.signing import Revocations, Target, verify_installed, verify_task
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.manifest import TaskManifest, decode_manifest
from swarmdeploy.protocol.states import FINAL_STATES, TargetState
from swarmdeploy.simulate.state import Progress, SimError, SimSettings, SimTask, now_ms
from swarmdeploy.simulate.transfer import Transfer
from swarmdeploy.transport.base import AgentLinkConfig, AgentTransport, LinkEvent, LinkState
from swarmdeploy.transport.http_agent import HttpAgentTransport
from swarmdeploy.transport.zmq import ZmqAgentTransport

log = logging.getLogger(__name__)
S = TargetState


class _Kind(msgspec.Struct):
    kind: str = "deploy"


class SimAgent:
    """One simulated agent (see the module docstring)."""

    def __init__(self, target_id: str, settings: SimSettings, progress: Progress) -> None:
        self.target_id = target_id
        self.settings = settings
        self.progress = progress
        self.keys = generate_keypair()
        self._identity = SigningKey.generate()
        self.boot_id = secrets.token_hex(8)
        seed = secrets.randbits(64) if settings.seed is None else f"{settings.seed}/{target_id}"
        self._rng = random.Random(seed)
        self.tags = settings.tags
        self.config_revision = 0
        self.revoked = Revocations()
        self.last_sequence: dict[str, int] = {}  # per task kind, as the real agent keeps it
        self.last_task: dict[str, str] = {}  # per kind, the task of that sequence (a retry's)
        self.tasks: dict[str, SimTask] = {}
        self.transport: AgentTransport | None = None
        self._server: dict[str, Any] = {}
        # (task, state) -> (sent, reason, at_ms): a re-send repeats the report exactly, as the
        # real agent's does (same at_ms), so the manager can tell it is a copy
        self._unacked: dict[tuple[str, TargetState], tuple[float, str, int]] = {}
        self._spool: list[m.LogEntry] = []
        self._next_seq = 1
        self._log_acked = 0
        self._log_sent = 0.0
        # re-sends back off like the real agent's (agent/backoff.py): one for all reports, one
        # for the log batch, one per fetch
        self._state_backoff = Backoff(settings.resend_s)
        self._log_backoff = Backoff(settings.resend_s)
        self._fetch_backoff: dict[str, Backoff] = {}
        self._heartbeat_s = 15.0
        self._next_heartbeat = float("inf")
        self._next_health = float("inf")
        self._loop: asyncio.Task[None] | None = None
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            m.Welcome: self._on_welcome,
            m.Announce: self._on_announce,
            m.StateAck: self._on_state_ack,
            m.Task: self._on_task,
            m.Chunk: self._on_chunk,
            m.LogAck: self._on_log_ack,
            m.Error: self._on_error,
            m.Hint: self._on_hint,
            m.Config: self._on_config,
            m.Stop: self._on_stop,
        }

    # --- registration (seed 003 §4.3) ----------------------------------------------------
    async def register(self, http: httpx.AsyncClient, token: str, deadline: float) -> int:
        """``POST /rpc/targets`` with ``token``; waits out ``429`` (``Retry-After``) until
        ``deadline`` (monotonic). Returns how many times it was rate limited; raises
        :class:`SimError` for any other refusal or a CA that is not the trusted one."""
        body = {
            "id": self.target_id,
            "tags": list(self.tags),
            "publicKey": self.keys.public,
            "identityKey": base64.b64encode(bytes(self._identity.verify_key)).decode(),
        }
        limited = 0
        while True:
            resp = await http.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
            if resp.status_code != 429:
                break
            limited += 1
            wait_s = float(resp.headers.get("Retry-After", "1"))
            if time.monotonic() + wait_s > deadline:
                raise SimError(f"{self.target_id}: still rate limited at the deadline")
            await asyncio.sleep(wait_s)
        if resp.status_code != 201:
            raise SimError(
                f"{self.target_id}: registration refused: {resp.status_code} {resp.text}"
            )
        answer = resp.json()
        try:  # the CA the manager presents must be the anchor (the real agent's check)
            self.settings.anchors.adopt(base64.b64decode(answer["caPublicKey"]))
        except VerificationError as exc:
            raise SimError(f"{self.target_id}: the manager's CA is not trusted: {exc}") from None
        self._server = answer["zeromq"]
        return limited

    # --- link -------------------------------------------------------------------------------
    async def start(self, manager_host: str = "127.0.0.1") -> None:
        """Connect out (CurveZMQ, or the HTTP link with ``settings.transport == "http"``) and
        serve the link until :meth:`close`."""
        s = self.settings
        config = AgentLinkConfig(
            target_id=self.target_id,
            keys=self.keys,
            manager_public_key=self._server["publicKey"],
            manager_host=manager_host,
            zmq_sub_port=self._server["subPort"],
            zmq_pub_port=self._server["pubPort"],
            reconnect_ivl_s=s.reconnect_ivl_s,
            reconnect_ivl_max_s=s.reconnect_ivl_max_s,
        )
        if s.transport == "http":
            self.transport = HttpAgentTransport(config, manager_url=s.manager_url)
        else:
            self.transport = ZmqAgentTransport(config)
        await self.transport.set_tags(self.tags)
        await self.transport.connect()
        self._loop = asyncio.create_task(self._serve(), name=f"sim:{self.target_id}")

    async def close(self, *, bye: bool = False) -> None:
        """Stop serving and close the link; with ``bye`` the manager is told first (the
        benchmark stops its manager next and sends none)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if bye and self.transport is not None:
            with contextlib.suppress(Exception):  # best effort: the link may be down
                await self.send(m.Bye(reason="simulator stopped"))
        if self.transport is not None:
            await self.transport.close(linger_s=0.5 if bye else 0.0)
            if isinstance(self.transport, ZmqAgentTransport) and self.transport.handshakes_broken:
                # retried by libzmq, so no link event counted them (handshake_failed)
                self.progress.count("handshake_broken", self.transport.handshakes_broken)

    async def send(self, msg: m.Message) -> None:
        """Hand ``msg`` to the link (dropped while disconnected; resends recover)."""
        assert self.transport is not None
        await self.transport.send(msg)

    async def _serve(self) -> None:
        assert self.transport is not None
        while True:
            try:
                got = await self.transport.recv(timeout_s=self._timeout())
                if isinstance(got, LinkEvent):
                    await self._on_link(got)
                elif got is not None:
                    await self._on_message(got)
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # top of the agent's loop: log and carry on
                log.exception("%s: handling failed", self.target_id)
                self.progress.count("crashes")

    def _timeout(self) -> float:
        due = min(self._next_heartbeat, self._next_health, *self._installs_due())
        if self._unacked or self._spool or any(t.transfer or t.fetch_sent for t in self.open()):
            due = min(due, time.monotonic() + 1.0)
        return max(0.01, min(due - time.monotonic(), 60.0))

    def _installs_due(self) -> list[float]:
        return [t.install_due for t in self.tasks.values() if t.install_due]

    def idle(self) -> bool:
        """Whether everything this agent sent is acknowledged (reports, logs, requests) and
        no simulated install is running."""
        return (
            not self._unacked
            and not self._spool
            and not any(t.transfer or t.fetch_sent or t.install_due for t in self.open())
        )

    def open(self) -> list[SimTask]:
        """Tasks not yet in a final state."""
        return [t for t in self.tasks.values() if t.state not in FINAL_STATES]

    async def _on_link(self, event: LinkEvent) -> None:
        if event.state is LinkState.CONNECTED:
            await self._hello()
        elif event.state is LinkState.AUTH_FAILED:
            self.progress.fail(self.target_id, f"link {event.state.value}: {event.detail}")
        elif event.state is LinkState.HANDSHAKE_FAILED:
            # like the real agent: logged, and the link tries again (a manager that drops
            # handshakes it could not finish in time, e.g. in a connect storm of thousands,
            # resets them); a wrong manager key never gets a welcome
            log.warning("%s: link %s: %s", self.target_id, event.state.value, event.detail)
            self.progress.count("handshake_failed")

    async def _hello(self) -> None:
        # like the real agent: every unacknowledged report, then other unfinished tasks
        reports = [m.TaskReport(task_id=task_id, state=state, reason=reason, at_ms=at_ms)
                   for (task_id, state), (_, reason, at_ms) in self._unacked.items()]  # fmt: skip
        pending = {task_id for task_id, _ in self._unacked}
        reports += [m.TaskReport(task_id=t.task_id, state=t.state)
                    for t in self.open() if t.task_id not in pending]  # fmt: skip
        hello = m.Hello(
            agent_version=__version__,
            boot_id=self.boot_id,
            arch=platform.machine(),
            tasks=reports,
            log_acked_seq=self._log_acked,
            config_revision=self.config_revision,
            extra=self.security_report(),
        )
        await self.send(hello)

    def security_report(self) -> dict[str, Any]:
        """The extra fields the real agent adds to ``hello`` and ``health``."""
        anchors = sorted(k.fingerprint for k in self.settings.anchors.keys)
        security = {"mode": "verified", "anchors": anchors, "unresolved_pins": 0,
                    "revocation_list": 0, "sequence": dict(sorted(self.last_sequence.items())),
                    "sandbox": "none"}  # fmt: skip
        return {"insecure_lab": False, "security": security}

    async def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self._heartbeat_s
            await self.send(m.Heartbeat(sent_at_ms=now_ms()))
        if now >= self._next_health:
            self._next_health = now + self.settings.health_s
            await self.send(self._health())
        for task in self.open():
            if task.install_due and now >= task.install_due:
                task.install_due = 0.0
                await self._install_done(task)
        await self._resend(now)

    def _health(self) -> m.Health:
        iface = m.NetInterface(name="eth0", addresses=["192.0.2.10/24"], bytes_sent=1, bytes_recv=1)
        return m.Health(
            at_ms=now_ms(), uptime_s=1000.0, load_1m=0.1, cpu_percent=1.0,
            mem_total_bytes=1 << 30, mem_available_bytes=1 << 29, disk_total_bytes=8 << 30,
            disk_free_bytes=4 << 30, agent_rss_bytes=30 << 20, interfaces=[iface],
            extra=self.security_report(),
        )  # fmt: skip

    async def _resend(self, now: float) -> None:
        limit = self.settings.resend_s
        if self._unacked and self._state_backoff.due(now):
            self._state_backoff.sent(now)
            for (task_id, state), (_, reason, at_ms) in list(self._unacked.items()):
                self.progress.count("resent_states")
                self._unacked[(task_id, state)] = (now, reason, at_ms)
                await self.send(
                    m.StateReport(task_id=task_id, state=state, reason=reason, at_ms=at_ms)
                )
        for task in self.open():
            backoff = self._fetch_backoff.get(task.task_id)
            if task.fetch_sent and backoff is not None and backoff.due(now):
                self.progress.count("resent_fetches")
                await self._fetch(task)
            if task.transfer is not None:
                for request in task.transfer.overdue(now, limit):
                    self.progress.count("resent_chunks")
                    await self.send(request)
        if self._spool and self._log_sent and self._log_backoff.due(now):
            self.progress.count("resent_logs")
            await self._send_log()

    # --- messages from the manager -------------------------------------------------------
    async def _on_message(self, msg: m.Message) -> None:
        handler = self._handlers.get(type(msg))
        self.progress.count(f"received_{m.message_type(msg)}")
        if handler is not None:
            await handler(msg)
        elif isinstance(msg, m.LogRequest | m.TerminalCommand | m.TerminalStop):
            text = "not supported by a simulated agent"
            await self.send(m.RequestAck(request_id=msg.request_id, ok=False, message=text))

    async def _on_welcome(self, msg: m.Welcome) -> None:
        self._heartbeat_s = msg.heartbeat_interval_s
        now = time.monotonic()
        self._next_heartbeat = now + self._heartbeat_s
        if self.settings.health_s > 0 and self._next_health == float("inf"):
            self._next_health = now  # the real agent reports health right after start
        if msg.revocations:
            crl = verify_revocation_list(msg.revocations, self.settings.anchors, last_number=0)
            self.revoked = Revocations.from_list(crl)
        self._on_log_acked(msg.log_acked_seq)
        if self._spool:  # the real agent re-sends the rest after every welcome
            await self._send_log()
        for task in self.open():  # re-send what the lost connection may have swallowed
            if task.fetch_sent:
                await self._fetch(task)
            if task.transfer is not None:
                for request in task.transfer.restart():
                    await self.send(request)
        self.progress.note_welcome(self.target_id)

    async def _on_hint(self, msg: m.Hint) -> None:
        await self._hello()

    async def _on_config(self, msg: m.Config) -> None:
        """Apply the tags to the hint subscriptions and remember the revision (§6.8)."""
        assert self.transport is not None
        self.tags = tuple(msg.tags)
        await self.transport.set_tags(self.tags)
        self.config_revision = msg.revision
        await self.send(m.RequestAck(request_id=msg.request_id))
        self.progress.note_configured(self.target_id)

    async def _on_stop(self, msg: m.Stop) -> None:
        for task in self.open():
            if not msg.task_id or msg.task_id == task.task_id:
                task.transfer = None
                task.fetch_sent = task.install_due = 0.0
                await self._move(task, S.STOPPED, reason="stopped by request")
        await self.send(m.RequestAck(request_id=msg.request_id))

    async def _on_announce(self, msg: m.Announce) -> None:
        known = self.tasks.get(msg.task_id)
        if known is not None and not (known.state in FINAL_STATES and msg.attempt > known.attempt):
            return  # announced again (e.g. after a reconnect): already answered
        # new, or an operator's retry of a task that ended here (docs/protocol.md §6.3)
        task = SimTask(msg.task_id, msg.kind, S.ANNOUNCED, attempt=msg.attempt)
        self.tasks[msg.task_id] = task
        arch_ok = not msg.arch or platform.machine() in msg.arch
        if not arch_ok or msg.size_bytes > self.settings.max_task_bytes:
            self.progress.fail(self.target_id, f"declined {msg.task_id}")
            await self._move(task, S.DECLINED)
            return
        await self._move(task, S.ACCEPTED)

    async def _on_state_ack(self, msg: m.StateAck) -> None:
        self._unacked.pop((msg.task_id, msg.state), None)
        self._state_backoff.reset()
        task = self.tasks.get(msg.task_id)
        if not msg.ok:
            if task is not None and msg.current in task.reported:
                self.progress.count("stale_reports_refused")  # a re-send overtaken by a newer one
            else:
                self.progress.fail(self.target_id, f"{msg.state} refused: {msg.message}")
            return
        if task is None:
            return
        fetching = task.fetch_sent or task.manifest is not None
        if msg.state is S.ACCEPTED and task.state is S.ACCEPTED and not fetching:
            await self._fetch(task)  # once: an ack of a re-sent report must not fetch again
        elif msg.state in FINAL_STATES:
            self.progress.note_final(task.task_id, self.target_id, msg.state)

    async def _fetch(self, task: SimTask) -> None:
        task.fetch_sent = time.monotonic()
        backoff = self._fetch_backoff.setdefault(task.task_id, Backoff(self.settings.resend_s))
        backoff.sent(task.fetch_sent)
        await self.send(m.FetchTask(task_id=task.task_id))

    async def _on_task(self, msg: m.Task) -> None:
        task = self.tasks.get(msg.task_id)
        if task is None or task.state is not S.ACCEPTED or task.manifest is not None:
            return  # a duplicate answer to a re-sent fetch_task
        task.fetch_sent = 0.0
        try:
            manifest = self._verify(task, msg)
        except (VerificationError, MessageError) as exc:
            self.progress.fail(self.target_id, f"task {msg.task_id} refused: {exc}")
            await self._move(task, S.INSTALL_FAILED, reason=str(exc)[:200])
            return
        task.manifest = manifest
        self.progress.verified.setdefault(task.task_id, set()).add(self.target_id)
        self._marker(task.task_id, "verify", "signed by the task's operator")
        await self._move(task, S.TRANSFERRING)
        task.transfer = Transfer(task.task_id, manifest.artifacts, self.settings.chunk_window)
        for request in task.transfer.next_requests(time.monotonic()):
            await self.send(request)
        if task.transfer.complete:
            await self._finish(task)

    def _verify(self, task: SimTask, msg: m.Task) -> TaskManifest:
        """``verify_task`` against the anchors; the sequence is remembered per kind."""
        kind = msgspec.json.decode(msg.manifest, type=_Kind).kind
        last = self.last_sequence.get(kind, 0)
        if self.last_task.get(kind) == msg.task_id:
            last -= 1  # this very task again (an operator's retry): same sequence, as the agent
        verified = verify_task(
            msg.manifest,
            msg.signature,
            msg.certificate,
            anchors=self.settings.anchors,
            revoked=self.revoked,
            target=Target(self.target_id, frozenset(self.tags)),
            task_id=msg.task_id,
            now_ms=now_ms(),
            last_sequence=last,
        )
        manifest = decode_manifest(msg.manifest)
        if verified.facts.sequence >= self.last_sequence.get(kind, 0):
            self.last_sequence[kind] = verified.facts.sequence
            self.last_task[kind] = msg.task_id
        task.signed = (msg.manifest, msg.signature, msg.certificate, verified.facts.sequence)
        return manifest

    async def _on_chunk(self, msg: m.Chunk) -> None:
        task = self.tasks.get(msg.task_id)
        if task is None or task.transfer is None:
            return
        if not task.transfer.accept(msg):
            self.progress.count("unexpected_chunks")
            return
        self.progress.count("chunks")
        self.progress.count("chunk_bytes", len(msg.data))
        for request in task.transfer.next_requests(time.monotonic()):
            await self.send(request)
        if task.transfer.complete:
            await self._finish(task)

    async def _finish(self, task: SimTask) -> None:
        assert task.transfer is not None and task.manifest is not None and task.signed
        bad = task.transfer.mismatches()
        task.transfer = None
        if bad:
            self.progress.fail(self.target_id, f"digest mismatch: {', '.join(bad)}")
            await self._move(task, S.INSTALL_FAILED, reason="digest mismatch")
            return
        self.progress.count("digests_verified", len(task.manifest.artifacts))
        self._marker(task.task_id, "transfer", "payload complete, SHA-256 verified")
        await self._move(task, S.INSTALLING)
        self._marker(task.task_id, "install", f"running {len(task.manifest.install)} command(s)")
        if self.settings.install_s > 0:  # the outcome comes at a later tick
            task.install_due = time.monotonic() + self.settings.install_s
            return
        await self._install_done(task)

    async def _install_done(self, task: SimTask) -> None:
        """The simulated install ended: failed (drawn with ``failure_rate``) or installed,
        then started and exited."""
        assert task.manifest is not None and task.signed
        if self._rng.random() < self.settings.failure_rate:
            self.progress.count("simulated_failures")
            reason = f"simulated install failure (failure rate {self.settings.failure_rate:g})"
            self._marker(task.task_id, "install", reason)
            await self._move(task, S.INSTALL_FAILED, reason=reason)
            await self._send_log()
            return
        await self._move(task, S.INSTALLED)
        manifest, signature, certificate, sequence = task.signed
        verify_installed(  # the real agent checks again before every start
            manifest, signature, certificate, anchors=self.settings.anchors,
            revoked=self.revoked, target=Target(self.target_id, frozenset(self.tags)),
            installed_sequence=sequence,
        )  # fmt: skip
        self._marker(task.task_id, "run", f"starting {len(task.manifest.run)} run command(s)")
        await self._move(task, S.RUNNING)
        self._marker(task.task_id, "run", "command exited with status 0")
        await self._move(task, S.EXITED)
        await self._send_log()

    async def _on_log_ack(self, msg: m.LogAck) -> None:
        self._on_log_acked(msg.upto_seq)

    def _on_log_acked(self, upto_seq: int) -> None:
        self._log_backoff.reset()
        self._log_acked = max(self._log_acked, upto_seq)
        self._spool = [e for e in self._spool if e.seq > upto_seq]
        if not self._spool:
            self._log_sent = 0.0  # new lines are a first send, not a re-send
        if self._log_acked >= self._next_seq:  # the manager holds more: continue after it
            self._next_seq = self._log_acked + 1

    async def _on_error(self, msg: m.Error) -> None:
        self.progress.count(f"error_{msg.code}")
        task = self.tasks.get(msg.task_id)
        if msg.code == "busy" and task is not None:  # retry at the next tick
            if task.fetch_sent:
                task.fetch_sent = 1.0
            if task.transfer is not None:
                task.transfer.retry(msg.sha256, msg.index)
            return
        if msg.in_reply_to == "chunk_request" and (task is None or task.transfer is None):
            # as the real agent (agent/processor.py): an answer to a re-sent chunk request
            # after the transfer ended has nobody waiting for it
            self.progress.count("stale_chunk_errors")
            return
        self.progress.fail(self.target_id, f"error {msg.code} for {msg.in_reply_to}: {msg.message}")

    # --- reports and logs ------------------------------------------------------------------
    async def _move(self, task: SimTask, state: TargetState, reason: str = "") -> None:
        task.state = state
        task.reported.append(state)
        await self._report(task.task_id, state, reason)

    async def _report(
        self, task_id: str, state: TargetState, reason: str = "", at_ms: int = 0
    ) -> None:
        at_ms = at_ms or now_ms()
        self._unacked[(task_id, state)] = (time.monotonic(), reason, at_ms)
        self._state_backoff.reset()  # a new report: the next re-send after the base wait
        self._state_backoff.sent(time.monotonic())
        await self.send(m.StateReport(task_id=task_id, state=state, reason=reason, at_ms=at_ms))

    def _marker(self, task_id: str, stage: str, text: str) -> None:
        entry = m.LogEntry(seq=self._next_seq, time_ms=now_ms(), task=task_id, stage=stage,
                           command="$agent", output=text)  # fmt: skip
        self._next_seq += 1
        self._spool.append(entry)

    async def _send_log(self) -> None:
        self._log_sent = time.monotonic()
        self._log_backoff.sent(self._log_sent)
        await self.send(m.LogBatch(entries=self._spool[: m.MAX_LOG_ENTRIES]))
