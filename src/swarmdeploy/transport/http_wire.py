"""The sealed envelopes of the HTTP link (ADR 0013, ``docs/protocol.md`` §10). No I/O.

A request body is ``MAGIC | ephemeral public key (32) | nonce (24) | box``; the box (NaCl
``crypto_box`` from the ephemeral key to the manager's Curve25519 key) holds the agent's
long-term public key and an inner box from that key to the manager's, which holds the
:class:`LinkRequest`. The outer layer hides which agent is speaking from anyone on the path
(like CurveZMQ's INITIATE); the inner layer proves it (only the holder of the agent's secret
key can make a box the manager opens with the agent's public key).

A response body is ``MAGIC | nonce (24) | box`` from the manager's key to the agent's, holding
a :class:`LinkResponse` that repeats the request's session, channel and counter: an agent
accepts a response only for the request it made.

Replays and reordering are refused with :class:`CounterWindow`: every request carries a
manager-issued session id and, per channel, a counter that must grow.

Payload downloads (``GET /agent/v1/payload``, ADR 0013) carry a sealed ``fetch`` request in
the ``Authorization`` header and an HTTP ``Range``. The body is the artifact's *sealed
stream*: chunk ``i`` of the manifest (``chunk_bytes`` each) becomes one frame, the chunk
boxed from the manager's key to the agent's with a nonce derived from (SHA-256, offset,
length) -- the same plaintext always gets the same nonce, so no nonce is ever used for two
different plaintexts, and a frame opens only at the place it belongs. Frames have a fixed
size (chunk + 16), so a byte range of the stream that starts at a frame boundary names the
chunks to resume from.
"""

from __future__ import annotations

import hashlib

import msgspec
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from zmq.utils import z85

MAGIC = b"SDH1"
_KEY = 32
_NONCE = Box.NONCE_SIZE
_MAC = 16  # Poly1305 tag
#: Channels of one session: ``open`` starts it; ``poll``, ``send`` and ``fetch`` (payload
#: downloads) each count on their own.
CHANNELS = ("open", "poll", "send", "fetch")
#: Bytes a sealed frame adds to its chunk (the Poly1305 tag).
FRAME_OVERHEAD = _MAC


class EnvelopeError(Exception):
    """A body that cannot be opened: garbage, tampered, or sealed for another key.

    ``code`` is ``bad_envelope`` (the outer box: wrong manager key or garbage) or
    ``bad_signature`` (the inner box does not open with the claimed agent key: tampered or
    forged).
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class LinkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """What an agent asks for in one HTTP request."""

    target: str
    channel: str
    session: bytes = b""
    counter: int = 0
    wait_s: float = 0.0
    topics: list[bytes] = []
    messages: list[bytes] = []
    task_id: str = ""
    sha256: str = ""
    range_start: int = 0


class LinkResponse(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The manager's answer, bound to the request by ``session``/``channel``/``counter``."""

    session: bytes
    channel: str
    counter: int
    messages: list[bytes] = []
    poll_gap_s: float = 0.0


class _Outer(msgspec.Struct, array_like=True):
    agent_key: bytes
    inner: bytes


_REQ_DEC = msgspec.msgpack.Decoder(LinkRequest)
_RESP_DEC = msgspec.msgpack.Decoder(LinkResponse)
_OUTER_DEC = msgspec.msgpack.Decoder(_Outer)
_ENC = msgspec.msgpack.Encoder()


def raw_key(z85_key: str) -> bytes:
    """The 32 raw bytes of a Z85 CurveZMQ key (the same Curve25519 key NaCl uses)."""
    return bytes(z85.decode(z85_key.encode("ascii")))


def seal_request(
    req: LinkRequest, agent_secret: bytes, agent_public: bytes, manager_public: bytes
) -> bytes:
    """The body of one request (a fresh ephemeral key and fresh random nonces each time)."""
    inner = Box(PrivateKey(agent_secret), PublicKey(manager_public)).encrypt(_ENC.encode(req))
    eph = PrivateKey.generate()
    outer = Box(eph, PublicKey(manager_public)).encrypt(
        _ENC.encode(_Outer(agent_key=agent_public, inner=bytes(inner)))
    )
    return MAGIC + bytes(eph.public_key) + bytes(outer)


def open_outer(body: bytes, manager_secret: bytes) -> tuple[bytes, bytes]:
    """Open the outer box: ``(agent public key, inner box)``; ``EnvelopeError`` otherwise."""
    if len(body) < len(MAGIC) + _KEY + _NONCE + _MAC or not body.startswith(MAGIC):
        raise EnvelopeError("not a swarmdeploy HTTP link envelope", "bad_envelope")
    eph = body[len(MAGIC) : len(MAGIC) + _KEY]
    try:
        plain = Box(PrivateKey(manager_secret), PublicKey(eph)).decrypt(body[len(MAGIC) + _KEY :])
        outer = _OUTER_DEC.decode(plain)
    except (CryptoError, msgspec.ValidationError, msgspec.DecodeError):
        raise EnvelopeError(
            "the envelope does not open with this manager's key", "bad_envelope"
        ) from None
    if len(outer.agent_key) != _KEY:
        raise EnvelopeError("the agent key in the envelope is not 32 bytes", "bad_envelope")
    return outer.agent_key, outer.inner


def open_inner(inner: bytes, agent_public: bytes, manager_secret: bytes) -> LinkRequest:
    """Open the inner box with the agent's key: proof that the agent made it."""
    try:
        plain = Box(PrivateKey(manager_secret), PublicKey(agent_public)).decrypt(inner)
    except CryptoError:
        raise EnvelopeError(
            "the request is not sealed by the agent's key", "bad_signature"
        ) from None
    try:
        req = _REQ_DEC.decode(plain)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise EnvelopeError(f"invalid request: {exc}", "bad_envelope") from None
    if req.channel not in CHANNELS:
        raise EnvelopeError(f"unknown channel {req.channel!r}", "bad_envelope")
    return req


def seal_response(resp: LinkResponse, manager_secret: bytes, agent_public: bytes) -> bytes:
    """The body of one authenticated response."""
    box = Box(PrivateKey(manager_secret), PublicKey(agent_public))
    return MAGIC + bytes(box.encrypt(_ENC.encode(resp)))


def open_response(
    body: bytes, agent_secret: bytes, manager_public: bytes, req: LinkRequest
) -> LinkResponse:
    """Open a response and check that it answers ``req``; ``EnvelopeError`` otherwise."""
    if not body.startswith(MAGIC):
        raise EnvelopeError("the response is not a swarmdeploy envelope", "bad_envelope")
    try:
        plain = Box(PrivateKey(agent_secret), PublicKey(manager_public)).decrypt(body[len(MAGIC) :])
        resp = _RESP_DEC.decode(plain)
    except (CryptoError, msgspec.ValidationError, msgspec.DecodeError):
        raise EnvelopeError(
            "the response is not sealed by the manager's key", "bad_signature"
        ) from None
    if (resp.channel, resp.counter) != (req.channel, req.counter) or (
        req.channel != "open" and resp.session != req.session
    ):
        raise EnvelopeError("the response answers another request", "bad_signature")
    return resp


class CounterWindow:
    """Per-channel counters of one session: each request must carry a larger counter than
    the last accepted one on its channel (a replayed or reordered request is refused)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def accept(self, channel: str, counter: int) -> bool:
        """Record ``counter`` on ``channel`` if it is new; ``False`` for a replay."""
        if counter <= self._last.get(channel, 0):
            return False
        self._last[channel] = counter
        return True


def frame_nonce(sha256: str, offset: int, length: int) -> bytes:
    """The nonce of the sealed frame holding ``length`` bytes at ``offset`` of the artifact
    ``sha256`` (see the module docstring)."""
    seed = b"swarmdeploy payload frame\0" + sha256.encode("ascii")
    seed += offset.to_bytes(8, "big") + length.to_bytes(8, "big")
    return hashlib.blake2b(seed, digest_size=_NONCE).digest()


def payload_box(own_secret: bytes, peer_public: bytes) -> Box:
    """The box that seals (manager) or opens (agent) payload frames."""
    return Box(PrivateKey(own_secret), PublicKey(peer_public))


def seal_frame(box: Box, sha256: str, offset: int, data: bytes) -> bytes:
    """One frame of the sealed stream: ``data`` (a whole chunk at ``offset``), ``len + 16``."""
    return bytes(box.encrypt(data, frame_nonce(sha256, offset, len(data))).ciphertext)


def open_frame(box: Box, sha256: str, offset: int, frame: bytes) -> bytes:
    """The chunk in ``frame``; ``EnvelopeError`` unless the manager sealed exactly this chunk
    of this artifact for this agent."""
    nonce = frame_nonce(sha256, offset, len(frame) - FRAME_OVERHEAD)
    try:
        return bytes(box.decrypt(frame, nonce))
    except CryptoError:
        raise EnvelopeError(
            f"payload frame at {offset} is not sealed by the manager's key", "bad_signature"
        ) from None


def sealed_size(size: int, chunk_bytes: int) -> int:
    """Length of the sealed stream of an artifact of ``size`` bytes."""
    return size + FRAME_OVERHEAD * -(-size // chunk_bytes)


def frame_start(index: int, chunk_bytes: int) -> int:
    """Offset of frame ``index`` in the sealed stream."""
    return index * (chunk_bytes + FRAME_OVERHEAD)
