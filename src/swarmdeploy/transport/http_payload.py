"""Ranged payload downloads over the manager's HTTP link (ADR 0013, ``docs/protocol.md`` §10).

``GET /v1/payload`` serves a task's artifact as a sealed stream (:mod:`.http_wire`) with HTTP
``Range``: the sealed ``fetch`` request rides in the ``Authorization`` header and passes the
same checks as a link request (its counter on the ``fetch`` channel), names the task, the
artifact and the range start (which must equal the ``Range`` header's); the manager's
:class:`PayloadSource` decides whether the target may have it and reads one chunk at a time.

One agent holds at most ``max_per_target`` streams at once (counted from the moment its
request passed the checks until its stream ends or breaks): one more is answered 429
``too_many_streams`` with ``Retry-After``, so that a single agent cannot tie up the
manager's chunk reads and sockets with parallel downloads. The agent fetches one artifact at a
time (it processes its tasks one after the other), so the default of 2
(``HttpLinkConfig.max_payload_streams_per_target``) leaves room for a stream it gave up on
that the server has not noticed yet.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import re
from collections.abc import Callable
from typing import Protocol

from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Chunk, ChunkRequest, Error
from swarmdeploy.transport import http_wire as wire
from swarmdeploy.transport.http_asgi import Refused, Scope, Send, headers_of

log = logging.getLogger(__name__)

PAYLOAD_PATH = "/v1/payload"
_SHA256 = re.compile("[0-9a-f]{64}")
#: How a refusal of the payload source maps to an HTTP status.
_PAYLOAD_STATUS = {"busy": 503, "internal": 503, "unknown_artifact": 404}
#: ``Retry-After`` of a refusal for too many streams of one agent (its others are running).
STREAMS_RETRY_AFTER_S = 5

#: Checks a sealed request as the link does: ``(owner, agent key, request)`` or :class:`Refused`.
Authenticate = Callable[[bytes], tuple[str, bytes, wire.LinkRequest]]
#: Checks the request's session and counter (:class:`Refused` if it fails).
CheckSession = Callable[[bytes, wire.LinkRequest], object]


class PayloadSource(Protocol):
    """Who may download what (the manager's delivery, ``docs/protocol.md`` §6.5)."""

    async def artifact(self, target_id: str, task_id: str, sha256: str) -> ArtifactInfo | Error:
        """The artifact ``sha256`` of a task ``target_id`` may fetch now, or the refusal."""
        ...

    async def chunk(self, target_id: str, msg: ChunkRequest) -> Chunk | Error:
        """One chunk, read on demand, or the refusal."""
        ...


class PayloadStreams:
    """Serves ``GET /v1/payload`` from a :class:`PayloadSource` (see the module docstring)."""

    def __init__(
        self,
        source: PayloadSource,
        secret: bytes,
        *,
        authenticate: Authenticate,
        check_session: CheckSession,
        max_per_target: int,
    ) -> None:
        if max_per_target < 1:
            raise ValueError("max_per_target must be at least 1")
        self._max_per_target = max_per_target
        #: Streams open per target id (a target leaves the counter when it has none).
        self.active: collections.Counter[str] = collections.Counter()
        self._source = source
        self._secret = secret
        self._authenticate = authenticate
        self._check_session = check_session
        #: Payload bytes sent (sealed stream), for tests and benchmarks.
        self.bytes_sent = 0

    async def serve(self, scope: Scope, send: Send) -> None:
        """Check the request and stream the artifact from the range start; :class:`Refused`
        before the headers are out. The transport has checked the method and that it is
        serving."""
        headers = headers_of(scope)
        owner, agent_key, req = self._authenticate(_auth_body(headers.get("authorization", "")))
        if req.channel != "fetch" or req.target != owner:
            raise Refused(400, "bad_envelope", "not a fetch request of this agent")
        if not _SHA256.fullmatch(req.sha256) or not 0 < len(req.task_id) <= 128:
            raise Refused(400, "bad_envelope", "fetch needs a task id and a hex SHA-256")
        self._check_session(agent_key, req)
        start = _range_start(headers.get("range"))
        if start != req.range_start:
            raise Refused(400, "range_mismatch", "the Range header differs from the sealed one")
        if self.active[owner] >= self._max_per_target:
            raise Refused(
                429,
                "too_many_streams",
                f"this agent has {self.active[owner]} payload download(s) running "
                f"(at most {self._max_per_target}); retry when one ended",
                STREAMS_RETRY_AFTER_S,
            )
        self.active[owner] += 1
        try:
            info = await self._source.artifact(owner, req.task_id, req.sha256)
            if isinstance(info, Error):
                raise Refused(_PAYLOAD_STATUS.get(info.code, 403), info.code, info.message, 5)
            await self._stream(send, owner, agent_key, req, info, start)
        finally:
            self.active[owner] -= 1
            if self.active[owner] <= 0:
                del self.active[owner]

    async def _stream(
        self,
        send: Send,
        owner: str,
        agent_key: bytes,
        req: wire.LinkRequest,
        info: ArtifactInfo,
        start: int,
    ) -> None:
        total = wire.sealed_size(info.size_bytes, info.chunk_bytes)
        first, rest = divmod(start, info.chunk_bytes + wire.FRAME_OVERHEAD)
        if rest or (start >= total and total > 0):
            raise Refused(416, "bad_range", f"the range must start at a frame below {total}")
        head = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(total - start).encode()),
            (b"content-range", f"bytes {start}-{total - 1}/{total}".encode()),
        ]
        await send({"type": "http.response.start", "status": 206, "headers": head})
        box = wire.payload_box(self._secret, agent_key)
        for index in range(first, info.chunk_count):
            ask = ChunkRequest(task_id=req.task_id, sha256=req.sha256, index=index)
            got = await self._source.chunk(owner, ask)
            if isinstance(got, Error):  # the headers are out: cutting it short is all we can
                log.warning("payload %s for %s stopped at chunk %d: %s %s", req.sha256[:12],
                            owner, index, got.code, got.message)  # fmt: skip
                return  # the server closes the connection: the agent resumes or gives up
            frame = wire.seal_frame(box, req.sha256, index * info.chunk_bytes, got.data)
            self.bytes_sent += len(frame)
            more = index + 1 < info.chunk_count
            await send({"type": "http.response.body", "body": frame, "more_body": more})
        if first >= info.chunk_count:  # an empty artifact
            await send({"type": "http.response.body", "body": b""})


def _auth_body(value: str) -> bytes:
    scheme, _, token = value.partition(" ")
    if scheme != wire.MAGIC.decode() or not token or len(token) > 8192:
        raise Refused(401, "bad_envelope", "Authorization must be 'SDH1 <sealed request>'")
    try:
        return base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise Refused(400, "bad_envelope", "the sealed request is not base64") from None


def _range_start(value: str | None) -> int:
    if value is None:
        return 0
    unit, _, spec = value.partition("=")
    first, dash, last = spec.partition("-")
    if unit.strip() != "bytes" or not dash or last.strip() or not first.strip().isdigit():
        raise Refused(416, "bad_range", "only 'Range: bytes=START-' is served")
    return int(first)
