"""The manager's ZAP handler: CURVE keys in an in-memory allow-list (``docs/protocol.md`` §3).

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` of the same context about every
CURVE handshake (RFC 27). The answer ``200`` carries the target id as ``User-Id``, which
libzmq attaches to every message of that connection; the manager checks it against the
claimed routing id. Everything else (unknown key, other mechanism, other domain, malformed
request) is refused with ``400``, so the client sees ``EVENT_HANDSHAKE_FAILED_AUTH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.utils import z85

from swarmdeploy.transport.zmq_common import ZAP_DOMAIN

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_VERSION = b"1.0"


class ZapHandler:
    """Answers ZAP requests with ``lookup(z85 public key) -> target id | None``."""

    def __init__(self, ctx: zmq.asyncio.Context, lookup: Callable[[str], str | None]) -> None:
        self._ctx = ctx
        self._lookup = lookup
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Bind the handler; must happen before the sockets it protects are bound."""
        sock = self._ctx.socket(zmq.REP)
        sock.linger = 0
        sock.bind(ZAP_ENDPOINT)
        self._sock = sock
        self._task = asyncio.create_task(self._serve(sock), name="swarmdeploy-zap")

    async def _serve(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                reply = self.answer(frames)
            except Exception:  # a REP socket must answer every request, whatever happens
                log.exception("ZAP handler failed; refusing the handshake")
                request_id = frames[1] if len(frames) > 1 else b""
                reply = [_VERSION, request_id, b"500", b"internal error", b"", b""]
            await sock.send_multipart(reply)

    def answer(self, frames: list[bytes]) -> list[bytes]:
        """The reply frames for one ZAP request (pure; exposed for tests)."""
        if len(frames) < 6:
            request_id = frames[1] if len(frames) > 1 else b""
            return [_VERSION, request_id, b"400", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism, *credentials = frames
        if version != _VERSION or domain != ZAP_DOMAIN.encode():
            return self._refuse(request_id, b"wrong ZAP version or domain", address)
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            return self._refuse(request_id, b"CURVE required", address)
        key = z85.encode(credentials[0]).decode("ascii")
        target_id = self._lookup(key)
        if target_id is None:
            return self._refuse(request_id, b"unknown key", address, key)
        log.debug("ZAP: accepted %s from %s", target_id, address.decode("ascii", "replace"))
        return [_VERSION, request_id, b"200", b"OK", target_id.encode(), b""]

    @staticmethod
    def _refuse(request_id: bytes, why: bytes, address: bytes, key: str = "") -> list[bytes]:
        log.info(
            "ZAP: refused a handshake from %s: %s %s",
            address.decode("ascii", "replace"),
            why.decode(),
            key,
        )
        return [_VERSION, request_id, b"400", why, b"", b""]

    async def close(self) -> None:
        """Stop answering and close the socket; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
