"""Compressed frames (``docs/protocol.md`` §2.1; seed 003: "appropriate encryption,
compression, and chunking techniques").

A sender that knows its peer accepts compression (negotiated in ``hello``/``welcome``) may send
a large message as an envelope ``{"v": 1, "type": "compressed", "alg": "zlib", "data": <the
message's MessagePack bytes, compressed>}``. It does so only when the message is at least
:data:`MIN_BYTES` long, is not a chunk of an archive (:data:`NEVER`: tar.gz and zip are
compressed already) and the envelope saves at least :data:`MIN_SAVING` of the bytes. The
receiver expands an envelope into at most ``max_bytes`` (a small envelope cannot become a
memory bomb) and decodes the inner message as if it had arrived alone; an envelope inside an
envelope is refused. No I/O happens here.
"""

from __future__ import annotations

import zlib
from typing import Any

from swarmdeploy.protocol.errors import MessageError

#: Envelope type on the wire.
ENVELOPE = "compressed"
#: Algorithms this version sends and accepts, in order of preference.
ALGORITHMS: tuple[str, ...] = ("zlib",)
#: Messages shorter than this go as they are (the header would eat the saving).
MIN_BYTES = 512
#: The envelope is sent only when it is at least this fraction smaller.
MIN_SAVING = 0.10
#: Message types never compressed: their payload is archive bytes, already compressed.
NEVER: frozenset[str] = frozenset({"chunk", "upload_chunk"})
#: zlib level: 6 is zlib's default, a good ratio for log text at a fraction of 9's CPU.
LEVEL = 6


def choose(offered: list[str] | tuple[str, ...]) -> str:
    """The algorithm to use with a peer that offered ``offered`` ("" when none is shared)."""
    return next((alg for alg in ALGORITHMS if alg in offered), "")


def compress(wire_type: str, data: bytes, alg: str) -> dict[str, Any] | None:
    """The envelope of the encoded message ``data`` of type ``wire_type``, or ``None`` when it
    should go as it is (no algorithm, too short, never compressed, or not worth it)."""
    if not alg or wire_type in NEVER or len(data) < MIN_BYTES:
        return None
    if alg != "zlib":
        raise ValueError(f"unknown compression {alg!r}")
    packed = zlib.compress(data, LEVEL)
    if len(packed) > len(data) * (1 - MIN_SAVING):
        return None
    return {"type": ENVELOPE, "alg": alg, "data": packed}


def expand(raw: dict[str, Any], *, max_bytes: int) -> bytes:
    """The inner message bytes of an envelope, never more than ``max_bytes``; MessageError
    for an unknown algorithm, corrupt data or an inner message that is too large."""
    alg, data = raw.get("alg"), raw.get("data")
    if alg not in ALGORITHMS:
        raise MessageError(f"compression {alg!r} is not supported", "unsupported_compression")
    if not isinstance(data, bytes):
        raise MessageError("a compressed message needs bytes in 'data'")
    inflater = zlib.decompressobj()
    try:
        inner = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise MessageError(f"corrupt compressed message: {exc}") from None
    if len(inner) > max_bytes:
        raise MessageError(f"compressed message expands beyond {max_bytes} bytes", "too_large")
    if not inflater.eof or inflater.unused_data:
        raise MessageError("corrupt compressed message: truncated or trailing data")
    return inner
