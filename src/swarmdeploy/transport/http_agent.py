"""The agent's HTTP polling transport: outbound-only, through a proxy if need be (ADR 0013).

One supervisor task opens a session (``open`` request), reports ``connected`` and then runs
two loops until one fails: the *poll* loop parks a long-poll at the manager (an idle agent
costs one request per ``poll_wait_s``; a message for it arrives as soon as it is queued) and
the *send* loop posts queued messages in order, in batches. Each loop numbers its requests;
the manager refuses a counter that does not grow (replays). A failure ends the session:

* 403 -> ``auth_failed`` (the key is unknown or was revoked), then retries with backoff;
* 400 ``bad_envelope`` or a response that does not open -> ``handshake_failed`` (wrong
  manager key, or not a swarmdeploy manager);
* 503/429 -> waits the manager's ``Retry-After`` (with jitter), so that a fleet coming back
  at once spreads out;
* anything else (connection lost, 401 session unknown after a manager restart, 409) ->
  ``connecting`` and a new session after an exponential, jittered backoff.

:meth:`HttpAgentTransport.download` fetches a task's artifact as a sealed stream with HTTP
``Range`` from where the caller's partial file ends (``GET /agent/v1/payload``, ADR 0013).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import random
from collections.abc import Callable

from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import (
    ALL_TOPIC,
    MANAGER_TO_AGENT,
    Message,
    UnknownMessage,
    decode,
    encode,
    id_topic,
    message_type,
)
from swarmdeploy.transport import http_wire as wire
from swarmdeploy.transport.base import (
    AgentLinkConfig,
    AgentTransport,
    Lifecycle,
    LinkState,
)
from swarmdeploy.transport.errors import PayloadRefused, TransportConfigError
from swarmdeploy.transport.http_client import HttpClient, HttpFailure, HttpResponse
from swarmdeploy.transport.link import AgentInbox, backoff_s, require_agent_outgoing

log = logging.getLogger(__name__)

LINK_PATH = "/agent/v1/link"
PAYLOAD_PATH = "/agent/v1/payload"
_ENVELOPE_BYTES = 64 * 1024


class _LinkDown(Exception):
    def __init__(self, state: LinkState, detail: str, delay_s: float | None = None) -> None:
        super().__init__(detail)
        self.state, self.detail, self.delay_s = state, detail, delay_s


def _refusal(resp: HttpResponse) -> _LinkDown:
    try:
        doc = json.loads(resp.body)
        code, text = str(doc.get("code", "")), str(doc.get("message", ""))[:200]
    except (ValueError, AttributeError):
        code, text = "", ""
    detail = f"HTTP {resp.status} {code}: {text}".strip()
    if resp.status == 403:
        return _LinkDown(LinkState.AUTH_FAILED, "the manager refused our key: " + detail)
    if resp.status == 400 and code == "bad_envelope":
        return _LinkDown(LinkState.HANDSHAKE_FAILED, "wrong manager key: " + detail)
    if resp.status in (429, 503):
        after = resp.headers.get("retry-after", "")
        delay = float(after) if after.isdigit() else None
        return _LinkDown(LinkState.CONNECTING, "manager busy: " + detail, delay)
    return _LinkDown(LinkState.CONNECTING, detail)


def _payload_refusal(status: int, headers: dict[str, str], body: bytes) -> Exception:
    try:
        doc = json.loads(body)
        code, text = str(doc.get("code", "")), str(doc.get("message", ""))[:200]
    except (ValueError, AttributeError):
        code, text = "", ""
    if status in (403, 404, 416) and code not in ("unknown_key", "bad_signature"):
        return PayloadRefused(code or f"http_{status}", text)
    after = headers.get("retry-after", "") if status in (429, 503) else ""
    return HttpFailure(
        f"payload download refused: HTTP {status} {code}: {text}".strip(),
        retry_after_s=float(after) if after.isdigit() else None,
    )


class HttpAgentTransport(AgentTransport):
    """:class:`AgentTransport` over sealed HTTP long-polls (see the module docstring)."""

    def __init__(
        self,
        config: AgentLinkConfig,
        *,
        manager_url: str,
        proxy: str | None = None,
        poll_wait_s: float = 20.0,
    ) -> None:
        if not config.keys.secret:
            raise TransportConfigError("the agent's secret key is required")
        if poll_wait_s <= 0:
            raise TransportConfigError("poll_wait_s must be positive")
        self.config = config
        self._client = HttpClient(
            manager_url,
            proxy=proxy,
            max_body_bytes=2 * config.max_message_bytes + _ENVELOPE_BYTES,
        )
        self._poll_wait_s = poll_wait_s
        self._secret = wire.raw_key(config.keys.secret)
        self._public = wire.raw_key(config.keys.public)
        self._manager_key = wire.raw_key(config.manager_public_key)
        self._inbox = AgentInbox(config.queue_size)
        self._outbox: collections.deque[bytes] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._topics: set[bytes] = {id_topic(config.target_id), ALL_TOPIC}
        self._task: asyncio.Task[None] | None = None
        self._session = b""
        self._counters = {"open": 0, "poll": 0, "send": 0, "fetch": 0}
        self._attempt = 0
        self._payload_box = wire.payload_box(self._secret, self._manager_key)

    async def connect(self) -> None:
        """See :meth:`AgentTransport.connect`."""
        self._require(Lifecycle.NEW)
        self._lifecycle = Lifecycle.OPEN
        await self._inbox.set_state(LinkState.CONNECTING)
        self._task = asyncio.create_task(self._supervise(), name="swarmdeploy-agent-http")

    async def _supervise(self) -> None:
        while True:
            delay: float | None = None
            try:
                await self._open_session()
                self._attempt = 0
                log.info("agent link (HTTP) connected to %s", self._client.manager.authority)
                await self._inbox.set_state(LinkState.CONNECTED)
                await self._serve_session()
            except _LinkDown as down:
                delay = down.delay_s
                await self._link_down(down.state, down.detail)
            except (HttpFailure, OSError) as exc:
                await self._link_down(LinkState.CONNECTING, f"link lost: {exc}")
            except Exception:  # top of the reconnect loop: log, back off, start over
                log.exception("agent link (HTTP) failed; starting over")
                await self._link_down(LinkState.CONNECTING, "link failed")
            if delay is None:
                delay = backoff_s(
                    self._attempt, self.config.reconnect_ivl_s, self.config.reconnect_ivl_max_s
                )
            else:
                delay *= random.uniform(1.0, 1.5)
            self._attempt += 1
            log.info("agent link (HTTP): retrying in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _link_down(self, state: LinkState, detail: str) -> None:
        self._outbox.clear()  # a new session starts with hello (§6.2), not with leftovers
        self._drained.set()
        self._session = b""
        if self.state is LinkState.CONNECTED:
            await self._inbox.set_state(LinkState.CONNECTING, detail)
        if state is not LinkState.CONNECTING:
            log.warning("agent link (HTTP): %s", detail)
            await self._inbox.set_state(state, detail)

    async def _exchange(self, req: wire.LinkRequest, timeout_s: float) -> wire.LinkResponse:
        body = wire.seal_request(req, self._secret, self._public, self._manager_key)
        resp = await self._client.post(LINK_PATH, body, timeout_s)
        if resp.status != 200:
            raise _refusal(resp)
        try:
            return wire.open_response(resp.body, self._secret, self._manager_key, req)
        except wire.EnvelopeError as exc:
            raise _LinkDown(LinkState.HANDSHAKE_FAILED, f"refused a response: {exc}") from None

    def _request(self, channel: str, **fields: object) -> wire.LinkRequest:
        self._counters[channel] += 1
        return wire.LinkRequest(
            target=self.config.target_id,
            channel=channel,
            session=self._session,
            counter=self._counters[channel],
            **fields,  # type: ignore[arg-type]
        )

    async def _open_session(self) -> None:
        self._counters = {"open": 0, "poll": 0, "send": 0, "fetch": 0}
        self._session = b""
        resp = await self._exchange(self._request("open"), timeout_s=30.0)
        self._session = resp.session

    async def _serve_session(self) -> None:
        loops = {
            asyncio.create_task(self._poll_loop(), name="http-poll"),
            asyncio.create_task(self._send_loop(), name="http-send"),
        }
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in done:
            task.result()  # re-raise the loop's failure

    async def _poll_loop(self) -> None:
        while True:
            wait_s = self._poll_wait_s * random.uniform(0.8, 1.0)
            req = self._request("poll", wait_s=wait_s, topics=sorted(self._topics))
            resp = await self._exchange(req, timeout_s=wait_s + 30.0)
            for raw in resp.messages:
                msg = self._decode(raw)
                if msg is not None:
                    await self._inbox.put(msg)
            if resp.poll_gap_s > 0:
                await asyncio.sleep(min(resp.poll_gap_s, 300.0) * random.uniform(0.5, 1.0))

    def _decode(self, data: bytes) -> Message | None:
        try:
            msg = decode(data, max_bytes=self.config.max_message_bytes)
        except MessageError as exc:
            log.warning("dropped an invalid message from the manager: %s", exc)
            return None
        if not isinstance(msg, UnknownMessage) and message_type(msg) not in MANAGER_TO_AGENT:
            log.warning("dropped a %r from the manager (wrong direction)", message_type(msg))
            return None
        return msg

    async def _send_loop(self) -> None:
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            batch: list[bytes] = []
            size = 0
            for item in self._outbox:
                if batch and size + len(item) > self.config.max_message_bytes:
                    break
                batch.append(item)
                size += len(item)
            await self._exchange(self._request("send", messages=batch), timeout_s=60.0)
            for _ in batch:
                self._outbox.popleft()
            if not self._outbox:
                self._drained.set()

    @property
    def connections_opened(self) -> int:
        """TCP connections (or proxy tunnels) opened so far: kept alive, they are few."""
        return self._client.connections_opened

    async def download(
        self, task_id: str, info: ArtifactInfo, have: int, write: Callable[[bytes], bool]
    ) -> None:
        """Fetch artifact ``info`` of ``task_id`` from byte ``have`` (a multiple of its
        ``chunk_bytes``) to its end: ``write`` gets each chunk in order, once its frame
        opened (it returns False to stop early). ``PayloadRefused`` when the manager refuses
        for good; ``OSError`` (``HttpFailure``) when the link is down or breaks -- the caller
        resumes later from what it wrote."""
        if self.state is not LinkState.CONNECTED or not self._session:
            raise HttpFailure("the link is not connected")
        index = have // info.chunk_bytes
        start = wire.frame_start(index, info.chunk_bytes)
        req = self._request("fetch", task_id=task_id, sha256=info.sha256, range_start=start)
        sealed = wire.seal_request(req, self._secret, self._public, self._manager_key)
        headers = {
            "Authorization": "SDH1 " + base64.urlsafe_b64encode(sealed).decode("ascii"),
            "Range": f"bytes={start}-",
        }
        async with self._client.stream(PAYLOAD_PATH, headers, timeout_s=60.0) as body:
            if body.status != 206:
                raise _payload_refusal(body.status, body.headers, await body.read(8192))
            for i in range(index, info.chunk_count):
                offset, length = info.chunk_span(i)
                frame = await body.read(length + wire.FRAME_OVERHEAD)
                try:
                    data = wire.open_frame(self._payload_box, info.sha256, offset, frame)
                except wire.EnvelopeError as exc:
                    raise HttpFailure(str(exc)) from None
                if not write(data):
                    return

    async def send(self, msg: Message) -> bool:
        """See :meth:`AgentTransport.send`."""
        self._require(Lifecycle.OPEN)
        require_agent_outgoing(msg)
        data = encode(msg, max_bytes=self.config.max_message_bytes)
        if self.state is not LinkState.CONNECTED or len(self._outbox) >= self.config.queue_size:
            return False
        self._outbox.append(data)
        self._drained.clear()
        self._outbox_ready.set()
        return True

    async def close(self, linger_s: float = 0.0) -> None:
        """See :meth:`AgentTransport.close`. With ``linger_s`` queued messages (``bye``) get
        that long to leave."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        if linger_s > 0 and self.state is LinkState.CONNECTED and self._outbox:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger_s):
                    await self._drained.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._client.close()
        await self._inbox.set_state(LinkState.CLOSED)
