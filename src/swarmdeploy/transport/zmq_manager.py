"""The manager's ZeroMQ transport: a CURVE ROUTER and a CURVE PUB behind a ZAP allow-list.

Layout and reasons: ``docs/adr/0002-zeromq-socket-layout.md`` and ADR 0015; message rules:
``docs/protocol.md`` §1 and §3. Agents connect out to the ROUTER (agents older than ADR 0015
also to the PUB, for hints). Every incoming message is accepted only if the ZAP ``User-Id``
of its connection is still allowed and equals the target-id part of its routing id
(``<target id>/<secret nonce>``); the manager routes to a target only through the routing id
of its latest ``hello`` or ``subscribe``. Hints go to the connections whose ``subscribe``
named their topic, and on the PUB. ``revoke`` re-binds both sockets, which drops every live
connection at once (agents reconnect; the revoked key fails ZAP).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

import zmq
import zmq.asyncio

from swarmdeploy.protocol.compression import ALGORITHMS
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    ALL_TOPIC,
    Chunk,
    Error,
    Hello,
    Hint,
    Message,
    Subscribe,
    Welcome,
    encode,
    id_topic,
    tag_topic,
)
from swarmdeploy.transport.base import (
    Lifecycle,
    ManagerLinkConfig,
    ManagerTransport,
    WireStats,
)
from swarmdeploy.transport.errors import BindError, TransportClosed, TransportConfigError
from swarmdeploy.transport.link import (
    AllowList,
    check_topic,
    decode_from_agent,
    require_addressed_outgoing,
    require_hint,
)
from swarmdeploy.transport.zap import ZapHandler
from swarmdeploy.transport.zmq_common import ZAP_DOMAIN, apply_common, endpoint

log = logging.getLogger(__name__)

#: Encoded chunks kept for the next agents that ask for the same one (bytes, about).
CHUNK_CACHE_BYTES = 32 << 20


class ChunkFrames:
    """Encoded ``chunk`` messages as libzmq frames, newest kept up to ``max_bytes``.

    A bulk deployment sends the same chunks to every agent. Each is encoded once into a frame
    libzmq owns, and every send queues a reference to that one buffer: no copy per agent, and
    the chunks waiting in the send queues of a thousand agents take the memory of one each.
    A chunk's content is fixed by its artifact's SHA-256 and index, so the key cannot serve
    another chunk's bytes.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._frames: collections.OrderedDict[tuple[str, str, int, int], zmq.Frame] = (
            collections.OrderedDict()
        )

    def frame(self, msg: Chunk, max_message_bytes: int) -> zmq.Frame:
        """The frame of ``msg`` (encoded now, or the one kept). Raises ``MessageError``."""
        key = (msg.task_id, msg.sha256, msg.index, len(msg.data))
        found = self._frames.get(key)
        if found is not None:
            self._frames.move_to_end(key)
            return found
        frame = zmq.Frame(encode(msg, max_bytes=max_message_bytes), copy=True)
        self._frames[key] = frame
        self._bytes += len(frame)
        while self._bytes > self._max and len(self._frames) > 1:
            _, old = self._frames.popitem(last=False)
            self._bytes -= len(old)
        return frame


class HintRoutes:
    """Which agent connection takes which hint topics (ADR 0015): its own ``ID-`` topic,
    ``ALL`` and the tags of its latest ``subscribe``, kept with the routing id it came on."""

    def __init__(self) -> None:
        self._targets: dict[str, tuple[bytes, frozenset[bytes]]] = {}
        self._topics: dict[bytes, set[str]] = {}

    def subscribe(self, target_id: str, route: bytes, tags: list[str]) -> None:
        """``target_id``'s connection ``route`` takes these tags' hints from now on."""
        self.forget(target_id)
        topics = frozenset({id_topic(target_id), ALL_TOPIC, *(tag_topic(t) for t in tags)})
        self._targets[target_id] = (route, topics)
        for topic in topics:
            self._topics.setdefault(topic, set()).add(target_id)

    def forget(self, target_id: str) -> None:
        """Drop ``target_id``'s subscription (revoked, or its connection is gone)."""
        found = self._targets.pop(target_id, None)
        if found is None:
            return
        for topic in found[1]:
            subscribers = self._topics.get(topic)
            if subscribers is not None:
                subscribers.discard(target_id)
                if not subscribers:
                    del self._topics[topic]

    def clear(self) -> None:
        """Every connection is gone."""
        self._targets.clear()
        self._topics.clear()

    def routes(self, topic: bytes) -> list[tuple[str, bytes]]:
        """``(target id, routing id)`` of every connection subscribed to ``topic``."""
        return [(t, self._targets[t][0]) for t in self._topics.get(topic, ())]


class ZmqManagerTransport(ManagerTransport):
    """:class:`ManagerTransport` over CurveZMQ (ROUTER on ``zmq_sub_port``; PUB on
    ``zmq_pub_port`` for the hints of agents older than ADR 0015)."""

    def __init__(self, config: ManagerLinkConfig) -> None:
        if not config.keys.secret:
            raise TransportConfigError("the manager's CurveZMQ secret key is required")
        self.config = config
        self._allowed = AllowList()
        self._routes: dict[str, bytes] = {}  # target id -> routing id of its latest hello
        self._compression: dict[str, str] = {}  # target id -> algorithm chosen at its hello
        self._hints = HintRoutes()
        self._chunks = ChunkFrames(CHUNK_CACHE_BYTES)
        self._stats = WireStats()
        self.wire = self._stats
        self._ctx: zmq.asyncio.Context | None = None
        self._zap: ZapHandler | None = None
        self._router: zmq.asyncio.Socket | None = None
        # the same ROUTER as a plain socket: non-blocking sends, and reads of what is already
        # queued, without the asyncio wrapper's future and poll per message
        self._router_sync: zmq.Socket[bytes] | None = None
        # set when the ROUTER may hold a message: by the event loop's reader on its
        # descriptor, by a send through the plain socket (:meth:`_wake_receiver`) and by close
        self._readable = asyncio.Event()
        self._reader_fd: int | None = None
        self._pub: zmq.asyncio.Socket | None = None
        self._endpoints: dict[str, str] = {}
        self._closed = asyncio.Event()
        self._rebind_lock = asyncio.Lock()

    @property
    def ports(self) -> tuple[int, int]:
        """The bound ``(zmq_sub_port, zmq_pub_port)`` (useful when configured as 0)."""
        self._require(Lifecycle.OPEN)
        router, pub = (int(self._endpoints[k].rsplit(":", 1)[1]) for k in ("router", "pub"))
        return router, pub

    async def start(self) -> None:
        """See :meth:`ManagerTransport.start`. ZAP is up before any socket is bound."""
        self._require(Lifecycle.NEW)
        ctx = zmq.asyncio.Context()
        self._ctx = ctx
        try:
            self._zap = ZapHandler(ctx, self._allowed.owner)
            self._zap.start()
            self._router = self._server_socket(ctx, zmq.ROUTER)
            self._router_sync = zmq.Socket.shadow(self._router.underlying)
            self._watch_router()
            self._pub = self._server_socket(ctx, zmq.PUB)
            cfg = self.config
            for name, sock, port in (
                ("router", self._router, cfg.zmq_sub_port),
                ("pub", self._pub, cfg.zmq_pub_port),
            ):
                sock.bind(endpoint(cfg.bind_host, port))
                self._endpoints[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            await self._teardown()
            self._lifecycle = Lifecycle.CLOSED
            raise BindError(f"cannot bind the manager's sockets: {exc}") from exc
        self._lifecycle = Lifecycle.OPEN
        log.info("manager link listening on %s (router) and %s (pub)", *self._endpoints.values())

    def _server_socket(self, ctx: zmq.asyncio.Context, kind: int) -> zmq.asyncio.Socket:
        cfg = self.config
        sock = ctx.socket(kind)
        apply_common(
            sock,
            heartbeat_ivl_s=None,  # only agents ping; their pings carry a TTL (zmq_common)
            heartbeat_timeout_s=0.0,
            max_message_bytes=cfg.max_message_bytes,
            ipv6=":" in cfg.bind_host,
        )
        sock.curve_server = True
        sock.curve_secretkey = cfg.keys.secret.encode("ascii")
        sock.curve_publickey = cfg.keys.public.encode("ascii")
        sock.zap_domain = ZAP_DOMAIN.encode()
        sock.sndhwm = cfg.send_hwm
        if kind == zmq.ROUTER:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown route: EHOSTUNREACH, not silence
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # safe: routing ids are secret (§3)
        return sock

    async def send(self, target_id: str, msg: Message) -> bool:
        """See :meth:`ManagerTransport.send`."""
        self._require(Lifecycle.OPEN)
        require_addressed_outgoing(msg)
        data: bytes | zmq.Frame
        if isinstance(msg, Chunk):  # never compressed (§2.1): the same bytes for every agent
            data = self._chunks.frame(msg, self.config.max_message_bytes)
        else:
            compression = self._compression.get(target_id, "")
            data = encode(msg, max_bytes=self.config.max_message_bytes, compression=compression)
        if isinstance(msg, Welcome):  # the link chose from the hello's offer (§2.1)
            chosen = msg.compression
            self._compression[target_id] = chosen if chosen in ALGORITHMS else ""
        route = self._routes.get(target_id)
        if route is None:
            return False
        return await self._send_to(target_id, route, data)

    async def _send_to(self, target_id: str, route: bytes, data: bytes | zmq.Frame) -> bool:
        assert self._router_sync is not None
        try:
            if isinstance(data, zmq.Frame):  # shared by every send (libzmq counts references)
                self._router_sync.send_multipart([route, data], flags=zmq.DONTWAIT, copy=False)
            else:  # copied: zero-copy sends of bytes start pyzmq's garbage thread
                self._router_sync.send_multipart([route, data], flags=zmq.DONTWAIT)
        except zmq.Again:
            return False  # the agent's queue is full: it is slow or gone
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH and self._routes.get(target_id) == route:
                del self._routes[target_id]  # its connection is gone; the next hello restores it
                self._hints.forget(target_id)
            return False
        finally:
            self._wake_receiver()
        self._stats.sent(data.buffer if isinstance(data, zmq.Frame) else data)
        return True

    async def publish(self, topic: bytes, msg: Hint) -> None:
        """See :meth:`ManagerTransport.publish`: to every connection subscribed to ``topic``
        (best effort: a full queue drops it), and on the PUB for agents older than ADR 0015."""
        self._require(Lifecycle.OPEN)
        require_hint(msg)
        check_topic(topic)
        data = encode(msg, max_bytes=self.config.max_message_bytes)
        for target_id, route in self._hints.routes(topic):
            if self._routes.get(target_id) == route:  # the connection it subscribed on
                await self._send_to(target_id, route, data)
        assert self._pub is not None
        with contextlib.suppress(zmq.Again):  # PUB drops for slow subscribers anyway
            await self._pub.send_multipart([topic, data], flags=zmq.DONTWAIT)

    async def recv(self, timeout_s: float | None = None) -> tuple[str, Message] | None:
        """See :meth:`ManagerTransport.recv`. A message already queued in the socket is read
        at once; only when the queue is empty does the receive wait, on one event the event
        loop's reader of the socket's descriptor sets (no poller or future per message)."""
        self._require(Lifecycle.OPEN)
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            if self._closed.is_set():
                raise TransportClosed("ZmqManagerTransport is closed")
            self._readable.clear()  # before reading: a message queued after this sets it
            frames = self._recv_queued()
            if frames is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._readable.wait()
                except TimeoutError:
                    return None
                continue  # readable, closed, or the socket was replaced by a revocation
            accepted = await self._accept(frames)
            if accepted is not None:
                return accepted

    def _recv_queued(self) -> list[zmq.Frame] | None:
        """The next message already queued in the ROUTER, or ``None``."""
        if self._router_sync is None:
            return None  # closed meanwhile (the caller checks)
        try:
            return self._router_sync.recv_multipart(flags=zmq.DONTWAIT, copy=False)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            if self._closed.is_set():
                raise TransportClosed("ZmqManagerTransport is closed") from exc
            raise

    def _watch_router(self) -> None:
        """Let the event loop watch the current ROUTER's descriptor (replacing the watch
        of a closed one)."""
        self._unwatch_router()
        assert self._router_sync is not None
        fd = int(self._router_sync.get(zmq.FD))
        asyncio.get_running_loop().add_reader(fd, self._wake_receiver)
        self._reader_fd = fd
        self._wake_receiver()  # what arrived before the watch

    def _unwatch_router(self) -> None:
        if self._reader_fd is not None:
            asyncio.get_running_loop().remove_reader(self._reader_fd)
            self._reader_fd = None

    def _wake_receiver(self) -> None:
        """Wake a waiting receive if a message is queued. Called by the event loop when the
        ROUTER's descriptor is readable, and after every operation on the plain socket:
        libzmq signals the descriptor once when its queue goes from empty to not empty, and
        any operation on the socket (a send, reading ``EVENTS``) consumes that signal, so a
        send between the signal and the event loop's next poll would leave the receive
        waiting on a queue that no longer signals. Reading ``EVENTS`` here also consumes the
        signal, so the level-triggered reader does not fire again for a message nobody has
        read yet."""
        if self._router_sync is not None:
            if int(self._router_sync.get(zmq.EVENTS)) & zmq.POLLIN:
                self._readable.set()

    async def _accept(self, frames: list[zmq.Frame]) -> tuple[str, Message] | None:
        if len(frames) != 2:
            log.warning("dropped a message of %d frames", len(frames))
            return None
        route, payload = frames[0].bytes, frames[1]
        try:
            user = str(payload.get("User-Id"))
        except zmq.ZMQError:
            user = ""
        if user not in self._allowed:
            log.warning("dropped a message from a connection that is not (or no longer) allowed")
            return None
        claimed, sep, _nonce = route.partition(b"/")
        if not sep or claimed != user.encode():
            log.warning("dropped a message of %r claiming routing id %r", user, claimed[:128])
            return None
        self._stats.received(payload.buffer)
        try:
            msg = decode_from_agent(payload.buffer, max_bytes=self.config.max_message_bytes)
        except MessageError as exc:
            log.warning("refused a message from %s: %s", user, exc)
            reply = Error(code=exc.code, message=str(exc)[:4096])
            await self._send_to(user, route, encode(reply))
            return None
        if isinstance(msg, Hello | Subscribe) or user not in self._routes:
            self._routes[user] = route  # both come first on a new connection
        if isinstance(msg, Subscribe):  # the transport's own business (ADR 0015)
            self._hints.subscribe(user, route, msg.tags)
            return None
        if isinstance(msg, Hello):  # a new session: plain until its welcome (§2.1)
            self._compression.pop(user, None)
        return user, msg

    async def allow(self, target_id: str, curve_public_key: str) -> None:
        """See :meth:`ManagerTransport.allow`."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        old = self._allowed.allow(target_id, curve_public_key)
        if old == curve_public_key:
            return
        if old is not None and self._lifecycle is Lifecycle.OPEN:
            await self._drop_all_connections(f"key of {target_id} replaced")

    async def revoke(self, target_id: str) -> None:
        """See :meth:`ManagerTransport.revoke`."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        if not self._allowed.revoke(target_id):
            return
        self._routes.pop(target_id, None)
        self._compression.pop(target_id, None)
        self._hints.forget(target_id)
        if self._lifecycle is Lifecycle.OPEN:
            await self._drop_all_connections(f"{target_id} revoked")

    async def _drop_all_connections(self, why: str) -> None:
        """Replace both sockets by fresh ones bound to the same endpoints (ADR 0002).

        Closing a socket hands it to libzmq's reaper thread, which closes every connection
        of it at once (linger 0) without waiting for this thread; ``zmq_unbind`` would wait
        until the application touches the socket again. The revoked agent is cut off now;
        every other agent reconnects within its reconnect interval and passes ZAP again.
        """
        async with self._rebind_lock:
            assert self._ctx is not None and self._router is not None and self._pub is not None
            self._routes.clear()
            self._hints.clear()
            self._unwatch_router()  # before the close: the descriptor's number is reused
            self._router.close(linger=0)
            self._pub.close(linger=0)
            self._router = self._server_socket(self._ctx, zmq.ROUTER)
            self._router_sync = zmq.Socket.shadow(self._router.underlying)
            self._watch_router()
            self._readable.set()  # a waiting receive moves to the new socket
            self._pub = self._server_socket(self._ctx, zmq.PUB)
            await self._bind_again(self._router, self._endpoints["router"])
            await self._bind_again(self._pub, self._endpoints["pub"])
        log.info("%s: dropped every agent connection; agents reconnect", why)

    async def _bind_again(self, sock: zmq.asyncio.Socket, ep: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.rebind_timeout_s
        while True:
            try:
                sock.bind(ep)
                return
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or loop.time() > deadline:
                    raise BindError(f"cannot re-bind {ep}: {exc}") from exc
                await asyncio.sleep(0.005)  # the reaper closes the old listener asynchronously

    def is_allowed(self, target_id: str) -> bool:
        """See :meth:`ManagerTransport.is_allowed`."""
        return target_id in self._allowed

    async def close(self) -> None:
        """See :meth:`ManagerTransport.close`."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        self._closed.set()
        self._readable.set()
        await asyncio.sleep(0)  # let a pending recv see the close before its socket goes
        await self._teardown()
        log.info("manager link closed")

    async def _teardown(self) -> None:
        self._unwatch_router()
        for sock in (self._router, self._pub):
            if sock is not None:
                sock.close(linger=0)
        self._router = self._pub = None
        self._router_sync = None
        if self._zap is not None:
            await self._zap.close()
            self._zap = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
