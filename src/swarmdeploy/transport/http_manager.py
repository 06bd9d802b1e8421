"""The manager's HTTP polling transport (ADR 0013, ``docs/protocol.md`` §10).

Agents that can only speak outbound HTTP (often through a proxy or Tor) reach the manager at
``POST /agent/v1/link`` on its HTTP port; the manager app mounts :attr:`HttpManagerTransport.
asgi` at ``/agent``. Every body is a sealed envelope (:mod:`.http_wire`); this module checks,
in order: the outer box opens with the manager's key (else 400 ``bad_envelope``), the agent
key inside is allowed (else 403 ``unknown_key``), the inner box opens with that key (else
403 ``bad_signature``), the session exists (else 401 ``session_unknown``) and the channel's
counter grew (else 409 ``replayed``). Only then are messages handed to :meth:`recv`, with the
key's owner as target id, exactly like the ZAP ``User-Id`` of the ZeroMQ link.

Messages for an agent wait in its mailbox until its long-poll takes them; a poll waits until
there is something or ``max_wait_s`` passed. Overload (too many session openings per second,
too many parked polls) is answered 503 with ``Retry-After``.

``GET /v1/payload`` (ranged artifact downloads) is served by :mod:`.http_payload`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
import secrets
import time
from collections.abc import Callable

from zmq.utils import z85

from swarmdeploy.crypto.curve import CurveKeyPair
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Error,
    Hint,
    Message,
    encode,
)
from swarmdeploy.transport import http_wire as wire
from swarmdeploy.transport.base import Lifecycle, ManagerTransport, check_public_key
from swarmdeploy.transport.errors import TransportClosed, TransportConfigError
from swarmdeploy.transport.http_asgi import (
    Receive,
    Refused,
    Scope,
    Send,
    read_body,
    respond,
    send_refusal,
)
from swarmdeploy.transport.http_payload import PAYLOAD_PATH, PayloadSource, PayloadStreams
from swarmdeploy.transport.link import (
    AllowList,
    check_topic,
    decode_from_agent,
    require_addressed_outgoing,
    require_hint,
)

log = logging.getLogger(__name__)

LINK_PATH = "/v1/link"


#: Envelope overhead on top of the messages of one request or response.
ENVELOPE_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class HttpLinkConfig:
    """Limits of the manager's HTTP link."""

    keys: CurveKeyPair
    max_wait_s: float = 25.0
    session_ttl_s: float = 90.0
    queue_size: int = 1000
    max_sessions_per_target: int = 4
    #: Payload downloads (``GET /v1/payload``) one agent may run at once (more: 429).
    max_payload_streams_per_target: int = 2
    max_parked_polls: int = 20000
    opens_per_s: float = 200.0
    open_burst: int = 400
    retry_after_s: int = 10
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        check_public_key(self.keys.public, "manager public key")
        if not self.keys.secret:
            raise TransportConfigError("the manager's secret key is required")
        if min(self.max_wait_s, self.session_ttl_s, self.opens_per_s) <= 0:
            raise TransportConfigError("HTTP link intervals and rates must be positive")
        if min(self.queue_size, self.max_sessions_per_target, self.max_parked_polls) < 1:
            raise TransportConfigError("HTTP link queue sizes must be at least 1")
        if self.max_payload_streams_per_target < 1:
            raise TransportConfigError("max_payload_streams_per_target must be at least 1")

    @property
    def max_body_bytes(self) -> int:
        """The largest request body the link reads."""
        return 2 * self.max_message_bytes + ENVELOPE_BYTES

    @staticmethod
    def max_body_limit() -> int:
        """:attr:`max_body_bytes` of the default message size (the app's body limit)."""
        return 2 * MAX_MESSAGE_BYTES + ENVELOPE_BYTES


@dataclasses.dataclass(slots=True, eq=False)
class _Session:
    target_id: str
    agent_key: bytes
    window: wire.CounterWindow
    seen: float
    topics: frozenset[bytes] = frozenset()


@dataclasses.dataclass(slots=True, eq=False)
class _Mailbox:
    queue: collections.deque[bytes]
    session: _Session | None = None
    waiter: asyncio.Future[None] | None = None
    revoked: bool = False

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class _Bucket:
    """Token bucket for session openings (``Retry-After`` when empty)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class HttpManagerTransport(ManagerTransport):
    """:class:`ManagerTransport` over sealed HTTP long-polls (see the module docstring)."""

    def __init__(
        self, config: HttpLinkConfig, *, on_refused: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self._on_refused = on_refused
        self._secret = wire.raw_key(config.keys.secret)
        self._allowed = AllowList()
        self._sessions: dict[bytes, _Session] = {}
        self._boxes: dict[str, _Mailbox] = {}
        self._inbox: asyncio.Queue[tuple[str, Message]] = asyncio.Queue(config.queue_size)
        self._closed = asyncio.Event()
        self._draining = False
        self._opens = _Bucket(config.opens_per_s, config.open_burst)
        self._parked = 0
        self._payloads: PayloadStreams | None = None
        #: Requests refused, by code (``/metrics`` reads it).
        self.refused: collections.Counter[str] = collections.Counter()

    def serve_payloads(self, source: PayloadSource) -> None:
        """Answer ``GET /v1/payload`` from ``source`` (without one: 404)."""
        self._payloads = PayloadStreams(
            source,
            self._secret,
            authenticate=self._authenticate,
            check_session=self._session_of,
            max_per_target=self.config.max_payload_streams_per_target,
        )

    @property
    def payload_bytes_sent(self) -> int:
        """Payload bytes sent (sealed stream), for tests and benchmarks."""
        return 0 if self._payloads is None else self._payloads.bytes_sent

    # -- ManagerTransport ----------------------------------------------------------------
    async def start(self) -> None:
        """See :meth:`ManagerTransport.start`; the ASGI app serves from now on."""
        self._require(Lifecycle.NEW)
        self._lifecycle = Lifecycle.OPEN
        log.info("HTTP agent link ready")

    def _live_box(self, target_id: str) -> _Mailbox | None:
        box = self._boxes.get(target_id)
        if box is None or box.session is None:
            return None
        if time.monotonic() - box.session.seen > self.config.session_ttl_s:
            return None
        return box

    def live_count(self) -> int:
        """How many targets have a live session."""
        return sum(1 for target_id in self._boxes if self._live_box(target_id) is not None)

    def is_connected(self, target_id: str) -> bool:
        """Whether ``target_id`` has a live HTTP session (it polled recently)."""
        return self._live_box(target_id) is not None

    async def send(self, target_id: str, msg: Message) -> bool:
        """See :meth:`ManagerTransport.send`: queue for the target's next poll."""
        self._require(Lifecycle.OPEN)
        require_addressed_outgoing(msg)
        data = encode(msg, max_bytes=self.config.max_message_bytes)
        box = self._live_box(target_id)
        if box is None or len(box.queue) >= self.config.queue_size:
            return False
        box.queue.append(data)
        box.wake()
        return True

    async def publish(self, topic: bytes, msg: Hint) -> None:
        """See :meth:`ManagerTransport.publish`: into the mailbox of every live session
        subscribed to ``topic`` (dropped where the mailbox is full)."""
        self._require(Lifecycle.OPEN)
        require_hint(msg)
        check_topic(topic)
        data = encode(msg, max_bytes=self.config.max_message_bytes)
        for target_id in list(self._boxes):
            box = self._live_box(target_id)
            if box is None or box.session is None or topic not in box.session.topics:
                continue
            if len(box.queue) < self.config.queue_size:
                box.queue.append(data)
                box.wake()

    async def recv(self, timeout_s: float | None = None) -> tuple[str, Message] | None:
        """See :meth:`ManagerTransport.recv`."""
        self._require(Lifecycle.OPEN)
        get = asyncio.ensure_future(self._inbox.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {get, closed}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
            if not get.done():
                get.cancel()
        if get in done:
            return get.result()
        if self._closed.is_set():
            raise TransportClosed("HttpManagerTransport is closed")
        return None

    async def allow(self, target_id: str, curve_public_key: str) -> None:
        """See :meth:`ManagerTransport.allow`. A replaced key ends the old key's sessions."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        old = self._allowed.allow(target_id, curve_public_key)
        if old is not None and old != curve_public_key:
            self._end_sessions(target_id)
        box = self._boxes.get(target_id)
        if box is not None:
            box.revoked = False

    async def revoke(self, target_id: str) -> None:
        """See :meth:`ManagerTransport.revoke`: the target's parked poll is answered 403 at
        once and every later request fails the allow-list. Other agents are not touched."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        if not self._allowed.revoke(target_id):
            return
        self._end_sessions(target_id)
        log.info("HTTP link: %s revoked; its sessions ended", target_id)

    def _end_sessions(self, target_id: str) -> None:
        for sid in [k for k, s in self._sessions.items() if s.target_id == target_id]:
            del self._sessions[sid]
        box = self._boxes.pop(target_id, None)
        if box is not None:
            box.revoked = True
            box.wake()

    def is_allowed(self, target_id: str) -> bool:
        """See :meth:`ManagerTransport.is_allowed`."""
        return target_id in self._allowed

    def drain(self) -> None:
        """The manager is stopping: answer every parked poll now (with what is queued, usually
        nothing) and refuse new requests with 503 and ``Retry-After``, so that the web server's
        graceful shutdown does not wait out long-polls. Unlike :meth:`close`, agents are not
        told their key is unknown: they back off and poll again, the next manager included."""
        if self._draining:
            return
        self._draining = True
        for box in self._boxes.values():
            box.wake()
        log.info("HTTP agent link draining: %d parked poll(s) answered", self._parked)

    async def close(self) -> None:
        """See :meth:`ManagerTransport.close`; parked polls are answered at once."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        self._closed.set()
        for box in self._boxes.values():
            box.revoked = True
            box.wake()
        log.info("HTTP agent link closed")

    # -- ASGI ----------------------------------------------------------------------------
    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app the manager mounts at ``/agent`` (only ``POST /v1/link``)."""
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if path.startswith(root) and root:
            path = path[len(root) :]
        try:
            if path == PAYLOAD_PATH and self._payloads is not None:
                if scope["method"] != "GET":
                    raise Refused(405, "method_not_allowed", "use GET")
                self._require_open()
                await self._payloads.serve(scope, send)
                return
            if path != LINK_PATH:
                raise Refused(404, "not_found", "no such agent endpoint")
            if scope["method"] != "POST":
                raise Refused(405, "method_not_allowed", "use POST")
            self._require_open()
            body = await read_body(receive, self.config.max_body_bytes)
            reply = await self._handle(body)
        except Refused as exc:
            self.refused[exc.code] += 1
            if self._on_refused is not None:
                self._on_refused(exc.code)
            await send_refusal(send, exc)
            return
        await respond(send, 200, reply, [(b"content-type", b"application/octet-stream")])

    def _require_open(self) -> None:
        if self._lifecycle is not Lifecycle.OPEN or self._draining:
            raise Refused(503, "unavailable", "the agent link is not serving", 5)

    async def _handle(self, body: bytes) -> bytes:
        owner, agent_key, req = self._authenticate(body)
        if req.channel == "open":
            resp = self._open(owner, agent_key, req)
        elif req.channel == "fetch":
            raise Refused(400, "bad_envelope", "fetch requests go to GET /agent/v1/payload")
        else:
            resp = await self._serve(owner, agent_key, req)
        return wire.seal_response(resp, self._secret, agent_key)

    def _authenticate(self, body: bytes) -> tuple[str, bytes, wire.LinkRequest]:
        """``(owner, agent key, request)`` of a sealed body, or the refusal."""
        try:
            agent_key, inner = wire.open_outer(body, self._secret)
        except wire.EnvelopeError as exc:
            raise Refused(400, exc.code, str(exc)) from None
        owner = self._allowed.owner(z85.encode(agent_key).decode("ascii"))
        if owner is None:
            raise Refused(403, "unknown_key", "this key is not (or no longer) allowed")
        try:
            req = wire.open_inner(inner, agent_key, self._secret)
        except wire.EnvelopeError as exc:
            raise Refused(403 if exc.code == "bad_signature" else 400, exc.code, str(exc)) from None
        return owner, agent_key, req

    def _open(self, owner: str, agent_key: bytes, req: wire.LinkRequest) -> wire.LinkResponse:
        if not self._opens.take():
            raise Refused(503, "busy", "too many agents connecting", self._retry_after())
        sid = secrets.token_bytes(16)
        ours = [k for k, s in self._sessions.items() if s.target_id == owner]
        for old in ours[: max(0, len(ours) - self.config.max_sessions_per_target + 1)]:
            del self._sessions[old]
        session = _Session(owner, agent_key, wire.CounterWindow(), time.monotonic())
        self._sessions[sid] = session
        if req.target != owner:
            log.warning("HTTP link: a key of %s claims to be %r", owner, req.target[:128])
        return wire.LinkResponse(session=sid, channel="open", counter=req.counter)

    def _retry_after(self) -> int:
        base = self.config.retry_after_s
        return random.randint(base, 3 * base)

    def _session_of(self, agent_key: bytes, req: wire.LinkRequest) -> _Session:
        session = self._sessions.get(req.session)
        if session is None or session.agent_key != agent_key:
            raise Refused(401, "session_unknown", "unknown or expired session; open a new one")
        if not session.window.accept(req.channel, req.counter):
            raise Refused(409, "replayed", "replayed or reordered request")
        session.seen = time.monotonic()
        return session

    async def _serve(
        self, owner: str, agent_key: bytes, req: wire.LinkRequest
    ) -> wire.LinkResponse:
        session = self._session_of(agent_key, req)
        impostor = req.target != owner
        if impostor:
            log.warning("HTTP link: dropped a request of %s claiming %r", owner, req.target[:128])
        box = self._box_for(owner, session, impostor)
        if req.channel == "send":
            if not impostor:
                await self._accept(owner, req.messages, box)
            return wire.LinkResponse(session=req.session, channel="send", counter=req.counter)
        session.topics = frozenset(req.topics[:1024])
        messages = [] if impostor else await self._wait(box, session, req.wait_s)
        return wire.LinkResponse(
            session=req.session, channel="poll", counter=req.counter, messages=messages
        )

    def _box_for(self, owner: str, session: _Session, impostor: bool) -> _Mailbox:
        if impostor:
            return _Mailbox(collections.deque())
        box = self._boxes.get(owner)
        if box is None:
            box = self._boxes[owner] = _Mailbox(collections.deque())
        if box.session is not session:
            box.queue.clear()  # a new connection: what was queued for the old one is gone
            box.session = session
        return box

    async def _accept(self, owner: str, messages: list[bytes], box: _Mailbox) -> None:
        for raw in messages:
            try:
                msg = decode_from_agent(raw, max_bytes=self.config.max_message_bytes)
            except MessageError as exc:
                log.warning("refused a message from %s: %s", owner, exc)
                box.queue.append(encode(Error(code=exc.code, message=str(exc)[:4096])))
                box.wake()
                continue
            await self._inbox.put((owner, msg))

    async def _wait(self, box: _Mailbox, session: _Session, wait_s: float) -> list[bytes]:
        box.wake()  # an older poll of the same target returns now
        if not box.queue and wait_s > 0 and not self._draining:
            if self._parked >= self.config.max_parked_polls:
                raise Refused(503, "busy", "too many agents polling", self._retry_after())
            loop = asyncio.get_running_loop()
            box.waiter = waiter = loop.create_future()
            self._parked += 1
            try:
                async with asyncio.timeout(min(wait_s, self.config.max_wait_s)):
                    await asyncio.shield(waiter)
            except TimeoutError:
                pass
            finally:
                self._parked -= 1
                if box.waiter is waiter:
                    box.waiter = None
        if box.revoked:
            raise Refused(403, "unknown_key", "this key is not (or no longer) allowed")
        if box.session is not session:
            return []  # a poll of a replaced session: what is queued belongs to the new one
        taken: list[bytes] = []
        size = 0
        while box.queue and (
            not taken or size + len(box.queue[0]) <= self.config.max_message_bytes
        ):
            item = box.queue.popleft()
            taken.append(item)
            size += len(item)
        return taken
