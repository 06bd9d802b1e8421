"""The agent's ZeroMQ transport: one CURVE DEALER connecting out to the manager's ROUTER
(``docs/protocol.md`` §1, §6.1; ADR 0002, ADR 0015).

Hints arrive on the same connection: the first message on every new connection, and the next
after a change of tags, is ``subscribe`` with the agent's tags, which the manager's transport
keeps as this connection's hint topics (§6.9).

One background task owns the socket. It reads the socket and its monitor, turns monitor
events into link states, and queues messages and :class:`LinkEvent` in arrival order.
libzmq reconnects by itself after a lost connection, but not after a refused handshake; then
the task closes the socket, waits an exponential, jittered backoff and creates a fresh one
(with a fresh secret routing id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from swarmdeploy.protocol.compression import ALGORITHMS
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    ALL_TOPIC,
    MANAGER_TO_AGENT,
    Error,
    Hello,
    Message,
    Subscribe,
    UnknownMessage,
    Welcome,
    decode,
    encode,
    id_topic,
    message_type,
)
from swarmdeploy.transport.base import (
    AgentLinkConfig,
    AgentTransport,
    Lifecycle,
    LinkState,
    WireStats,
)
from swarmdeploy.transport.errors import TransportConfigError
from swarmdeploy.transport.link import AgentInbox, backoff_s, require_agent_outgoing
from swarmdeploy.transport.zmq_common import apply_common, endpoint

log = logging.getLogger(__name__)

# Handshakes the manager refused: libzmq gives up on the connection, so the link starts over.
_REFUSED: dict[int, tuple[LinkState, str]] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: (LinkState.AUTH_FAILED, "the manager refused our key"),
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: (
        LinkState.HANDSHAKE_FAILED,
        "handshake failed: wrong manager key or not a swarmdeploy manager",
    ),
}
#: ``EVENT_HANDSHAKE_FAILED_NO_DETAIL`` means the TCP connection broke during the handshake
#: (its value is the errno) and libzmq reconnects by itself. A manager stopping or
#: restarting at that moment causes one; a manager with another key hangs up on every
#: handshake, so this many in a row on the addressed link count as a refused handshake.
BROKEN_HANDSHAKES_REFUSED = 3
#: How soon a ``subscribe`` that found no room in the socket is tried again (ms).
SUBSCRIBE_RETRY_MS = 50


class ZmqAgentTransport(AgentTransport):
    """:class:`AgentTransport` over CurveZMQ."""

    def __init__(self, config: AgentLinkConfig) -> None:
        if not config.keys.secret:
            raise TransportConfigError("the agent's CurveZMQ secret key is required")
        self.config = config
        self._inbox = AgentInbox(config.queue_size)
        self._topics: set[bytes] = {id_topic(config.target_id), ALL_TOPIC}
        self._ctx: zmq.asyncio.Context | None = None
        self._dealer: zmq.asyncio.Socket | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        #: ``subscribe`` is owed to the manager: a new connection, or the tags changed
        self._subscription_due = True
        self._task: asyncio.Task[None] | None = None
        self._attempt = 0
        self._broken_handshakes = 0  # in a row on the DEALER (BROKEN_HANDSHAKES_REFUSED)
        #: Handshakes of the addressed link broken by the connection so far (e.g. reset by a
        #: manager that could not finish them in time); retried, so they show in no state.
        self.handshakes_broken = 0
        self._linger_ms = 0
        self._offered: tuple[str, ...] = ()  # compression offered in the last hello (§2.1)
        self._compression = ""  # chosen by the manager's welcome
        self.wire = WireStats()

    async def connect(self) -> None:
        """See :meth:`AgentTransport.connect`."""
        self._require(Lifecycle.NEW)
        self._lifecycle = Lifecycle.OPEN
        self._ctx = zmq.asyncio.Context()
        await self._inbox.set_state(LinkState.CONNECTING)
        self._task = asyncio.create_task(self._supervise(), name="swarmdeploy-agent-link")

    async def _supervise(self) -> None:
        while True:
            try:
                await self._run_sockets()
            except Exception:  # top of the reconnect loop: log, back off, start over
                log.exception("agent link failed; starting over")
            finally:
                self._close_sockets()
            # The sockets are gone, so is the connection: the next handshake must be a new
            # `connected` event, or the daemon would not send `hello` (§6.2).
            if self.state is LinkState.CONNECTED:
                await self._inbox.set_state(LinkState.CONNECTING, "link restarted")
            delay = backoff_s(
                self._attempt, self.config.reconnect_ivl_s, self.config.reconnect_ivl_max_s
            )
            self._attempt += 1
            log.info("agent link: retrying in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _run_sockets(self) -> None:
        """Create the socket and serve it until a handshake is refused."""
        self._open_sockets()
        assert self._dealer is not None and self._monitor is not None
        poller = zmq.asyncio.Poller()
        for sock in (self._dealer, self._monitor):
            poller.register(sock, zmq.POLLIN)
        while True:
            owed = self._subscription_due and self.state is LinkState.CONNECTED
            ready = dict(await poller.poll(SUBSCRIBE_RETRY_MS if owed else None))
            if owed:  # the first attempt, right after the handshake, found no room
                await self._send_subscription(self._topics)
            try:
                if self._monitor in ready and await self._on_monitor(self._monitor):
                    return
                if self._dealer in ready:
                    await self._on_dealer(self._dealer)
            except zmq.Again:  # readiness without a whole message (e.g. the peer just died)
                continue

    def _open_sockets(self) -> None:
        assert self._ctx is not None
        cfg = self.config
        ipv6 = ":" in cfg.manager_host
        dealer = self._client_socket(zmq.DEALER, ipv6)
        # docs/protocol.md §3: the secret part makes the route unguessable for other agents.
        dealer.routing_id = f"{cfg.target_id}/{secrets.token_hex(16)}".encode()
        dealer.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a connection not yet made
        self._monitor = dealer.get_monitor_socket()
        self._dealer = dealer
        dealer.connect(endpoint(cfg.manager_host, cfg.zmq_sub_port))

    def _client_socket(self, kind: int, ipv6: bool) -> zmq.asyncio.Socket:
        assert self._ctx is not None
        cfg = self.config
        sock = self._ctx.socket(kind)
        apply_common(
            sock,
            heartbeat_ivl_s=cfg.heartbeat_ivl_s,
            heartbeat_timeout_s=cfg.heartbeat_timeout_s,
            max_message_bytes=cfg.max_message_bytes,
            ipv6=ipv6,
        )
        sock.curve_serverkey = cfg.manager_public_key.encode("ascii")
        sock.curve_publickey = cfg.keys.public.encode("ascii")
        sock.curve_secretkey = cfg.keys.secret.encode("ascii")
        sock.reconnect_ivl = int(cfg.reconnect_ivl_s * 1000)
        sock.reconnect_ivl_max = int(cfg.reconnect_ivl_max_s * 1000)
        return sock

    async def _on_monitor(self, monitor: zmq.asyncio.Socket) -> bool:
        """Apply one monitor event; ``True`` when the handshake was refused."""
        event = parse_monitor_message(await monitor.recv_multipart(flags=zmq.DONTWAIT))
        kind, value = event["event"], event["value"]
        if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and not self._refused_now():
            log.info("agent link: connection lost during the handshake (errno %s)", value)
            if self.state is LinkState.CONNECTED:
                await self._inbox.set_state(LinkState.CONNECTING, "link lost")
            return False  # libzmq reconnects by itself
        if kind in _REFUSED or kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._broken_handshakes = 0
            state, detail = _REFUSED.get(kind, (LinkState.HANDSHAKE_FAILED, "handshake failed"))
            log.warning("agent link: %s (status %s)", detail, value)
            if self.state is LinkState.CONNECTED:
                await self._inbox.set_state(LinkState.CONNECTING, "link lost")
            await self._inbox.set_state(state, f"{detail} (status {value})")
            return True
        if kind == zmq.EVENT_MONITOR_STOPPED:
            return True
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._attempt = self._broken_handshakes = 0
            log.info("agent link connected to %s", self.config.manager_host)
            if self.state is LinkState.CONNECTED:  # a new connection whose loss we missed
                await self._inbox.set_state(LinkState.CONNECTING, "link lost")
            # a new connection has no hint topics yet: they go first, before the hello
            await self._send_subscription(self._topics)
            await self._inbox.set_state(LinkState.CONNECTED)
        elif kind == zmq.EVENT_DISCONNECTED and self.state is LinkState.CONNECTED:
            log.info("agent link lost; reconnecting")
            await self._inbox.set_state(LinkState.CONNECTING, "link lost")
        return False

    def _refused_now(self) -> bool:
        """Whether one more handshake broken by the connection counts as refused: the
        ``BROKEN_HANDSHAKES_REFUSED``-th in a row."""
        self.handshakes_broken += 1
        self._broken_handshakes += 1
        return self._broken_handshakes >= BROKEN_HANDSHAKES_REFUSED

    async def _on_dealer(self, dealer: zmq.asyncio.Socket) -> None:
        frames = await dealer.recv_multipart(flags=zmq.DONTWAIT)
        msg = self._decode(frames[0] if len(frames) == 1 else b"")
        if msg is None:
            return
        if not isinstance(msg, UnknownMessage) and message_type(msg) not in MANAGER_TO_AGENT:
            log.warning("dropped a %r from the manager (wrong direction)", message_type(msg))
            return
        if isinstance(msg, Welcome):  # the manager's answer to the hello's offer (§2.1)
            chosen = msg.compression
            self._compression = chosen if chosen in self._offered and chosen in ALGORITHMS else ""
        if isinstance(msg, Error) and msg.in_reply_to == "subscribe":
            # a manager older than ADR 0015: it sends no hints on this link (best effort)
            log.info("the manager does not take hint subscriptions: %s", msg.code)
            return
        await self._inbox.put(msg)

    def _decode(self, data: bytes) -> Message | None:
        self.wire.received(data)
        try:
            return decode(data, max_bytes=self.config.max_message_bytes)
        except MessageError as exc:
            log.warning("dropped an invalid message from the manager: %s", exc)
            return None

    def _close_sockets(self) -> None:
        if self._dealer is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._dealer.disable_monitor()
        if self._monitor is not None:
            self._monitor.close(linger=0)
        if self._dealer is not None:
            self._dealer.close(linger=self._linger_ms)
        self._monitor, self._dealer = None, None

    async def send(self, msg: Message) -> bool:
        """See :meth:`AgentTransport.send`."""
        self._require(Lifecycle.OPEN)
        require_agent_outgoing(msg)
        if isinstance(msg, Hello):  # a new session: plain until its welcome answers (§2.1)
            self._compression, self._offered = "", tuple(msg.compression)
        data = encode(msg, max_bytes=self.config.max_message_bytes, compression=self._compression)
        if self.state is not LinkState.CONNECTED:
            return False
        if self._subscription_due:
            await self._send_subscription(self._topics)
        return await self._send_now(data)

    async def _send_now(self, data: bytes) -> bool:
        dealer = self._dealer
        if dealer is None:
            return False
        try:
            # copy=True: zero-copy sends would start pyzmq's process-wide garbage thread
            await dealer.send(data, flags=zmq.DONTWAIT)
        except zmq.ZMQError:  # EAGAIN: not connected right now or queue full
            return False
        self.wire.sent(data)
        return True

    async def _send_subscription(self, topics: set[bytes]) -> None:
        """Tell the manager this connection's hint tags; owed again if it cannot leave now."""
        tags = sorted(t[4:-1].decode() for t in topics if t.startswith(b"TAG-"))
        self._subscription_due = not await self._send_now(encode(Subscribe(tags=tags)))

    async def _subscribe(self, topics: set[bytes]) -> None:
        """See :meth:`AgentTransport._subscribe`: the manager learns the new tags now (or
        before the next message, if the link is down)."""
        self._subscription_due = True
        if self.state is LinkState.CONNECTED:
            await self._send_subscription(topics)

    async def close(self, linger_s: float = 0.0) -> None:
        """See :meth:`AgentTransport.close`. With ``linger_s`` the context waits that long
        for queued messages (e.g. ``bye``) to leave."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        self._linger_ms = int(linger_s * 1000)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close_sockets()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        await self._inbox.set_state(LinkState.CLOSED)
