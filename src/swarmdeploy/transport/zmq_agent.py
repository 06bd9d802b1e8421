"""The agent's ZeroMQ transport: a CURVE DEALER (addressed link) and a CURVE SUB (hints),
both connecting out to the manager (``docs/protocol.md`` §1, §6.1; ADR 0002).

One background task owns the sockets. It reads both sockets and their monitors, turns
monitor events into link states, and queues messages and :class:`LinkEvent` in arrival
order. libzmq reconnects by itself after a lost connection, but not after a refused
handshake; then the task closes the sockets, waits an exponential, jittered backoff and
creates fresh ones (with a fresh secret routing id).
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
    Hello,
    Hint,
    Message,
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
        self._sub: zmq.asyncio.Socket | None = None
        self._monitors: list[zmq.asyncio.Socket] = []
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
        """Create the sockets and serve them until a handshake is refused."""
        self._open_sockets()
        assert self._dealer is not None and self._sub is not None
        poller = zmq.asyncio.Poller()
        for sock in (self._dealer, self._sub, *self._monitors):
            poller.register(sock, zmq.POLLIN)
        while True:
            ready = dict(await poller.poll())
            try:
                for monitor in self._monitors:
                    if monitor in ready and await self._on_monitor(monitor):
                        return
                if self._dealer in ready:
                    await self._on_dealer(self._dealer)
                if self._sub in ready:
                    await self._on_sub(self._sub)
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
        sub = self._client_socket(zmq.SUB, ipv6)
        for topic in self._topics:
            sub.subscribe(topic)
        self._monitors = [dealer.get_monitor_socket(), sub.get_monitor_socket()]
        self._dealer, self._sub = dealer, sub
        dealer.connect(endpoint(cfg.manager_host, cfg.zmq_sub_port))
        sub.connect(endpoint(cfg.manager_host, cfg.zmq_pub_port))

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
        is_dealer = monitor is self._monitors[0]
        if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and not self._refused_now(is_dealer):
            log.info("agent link: connection lost during the handshake (errno %s)", value)
            if is_dealer and self.state is LinkState.CONNECTED:
                await self._inbox.set_state(LinkState.CONNECTING, "link lost")
            return False  # libzmq reconnects by itself
        if kind in _REFUSED or kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._broken_handshakes = 0
            state, detail = _REFUSED.get(kind, (LinkState.HANDSHAKE_FAILED, "handshake failed"))
            log.warning("agent link: %s (status %s)", detail, value)
            if self.state is LinkState.CONNECTED:  # the sub socket may notice first
                await self._inbox.set_state(LinkState.CONNECTING, "link lost")
            await self._inbox.set_state(state, f"{detail} (status {value})")
            return True
        if kind == zmq.EVENT_MONITOR_STOPPED:
            return True
        if is_dealer and kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._attempt = self._broken_handshakes = 0
            log.info("agent link connected to %s", self.config.manager_host)
            if self.state is LinkState.CONNECTED:  # a new connection whose loss we missed
                await self._inbox.set_state(LinkState.CONNECTING, "link lost")
            await self._inbox.set_state(LinkState.CONNECTED)
        elif is_dealer and kind == zmq.EVENT_DISCONNECTED and self.state is LinkState.CONNECTED:
            log.info("agent link lost; reconnecting")
            await self._inbox.set_state(LinkState.CONNECTING, "link lost")
        return False

    def _refused_now(self, is_dealer: bool) -> bool:
        """Whether one more handshake broken by the connection counts as refused: the
        ``BROKEN_HANDSHAKES_REFUSED``-th in a row on the addressed link (never the hint link's:
        the addressed link decides)."""
        if not is_dealer:
            return False
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
        await self._inbox.put(msg)

    async def _on_sub(self, sub: zmq.asyncio.Socket) -> None:
        frames = await sub.recv_multipart(flags=zmq.DONTWAIT)
        msg = self._decode(frames[1] if len(frames) == 2 else b"")
        if isinstance(msg, Hint):
            await self._inbox.put(msg)
        elif msg is not None:
            log.warning("dropped a %r on the hint link", message_type(msg))

    def _decode(self, data: bytes) -> Message | None:
        self.wire.received(data)
        try:
            return decode(data, max_bytes=self.config.max_message_bytes)
        except MessageError as exc:
            log.warning("dropped an invalid message from the manager: %s", exc)
            return None

    def _close_sockets(self) -> None:
        for sock in (self._dealer, self._sub):
            if sock is not None:
                with contextlib.suppress(zmq.ZMQError):
                    sock.disable_monitor()
        for monitor in self._monitors:
            monitor.close(linger=0)
        if self._sub is not None:
            self._sub.close(linger=0)
        if self._dealer is not None:
            self._dealer.close(linger=self._linger_ms)
        self._monitors, self._dealer, self._sub = [], None, None

    async def send(self, msg: Message) -> bool:
        """See :meth:`AgentTransport.send`."""
        self._require(Lifecycle.OPEN)
        require_agent_outgoing(msg)
        if isinstance(msg, Hello):  # a new session: plain until its welcome answers (§2.1)
            self._compression, self._offered = "", tuple(msg.compression)
        data = encode(msg, max_bytes=self.config.max_message_bytes, compression=self._compression)
        dealer = self._dealer
        if dealer is None or self.state is not LinkState.CONNECTED:
            return False
        try:
            # copy=True: zero-copy sends would start pyzmq's process-wide garbage thread
            await dealer.send(data, flags=zmq.DONTWAIT)
        except zmq.ZMQError:  # EAGAIN: not connected right now or queue full
            return False
        self.wire.sent(data)
        return True

    def _subscribe(self, topics: set[bytes]) -> None:
        """See :meth:`AgentTransport._subscribe`: the SUB socket follows the new topics."""
        if self._sub is not None:
            for topic in self._topics - topics:
                self._sub.unsubscribe(topic)
            for topic in topics - self._topics:
                self._sub.subscribe(topic)

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
