"""The manager's ZAP handler: CURVE keys in an in-memory allow-list (``docs/protocol.md`` §3).

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` of the same context about every
CURVE handshake (RFC 27). The answer ``200`` carries the target id as ``User-Id``, which
libzmq attaches to every message of that connection; the manager checks it against the
claimed routing id. Everything else (unknown key, other mechanism, other domain, malformed
request) is refused with ``400``, so the client sees ``EVENT_HANDSHAKE_FAILED_AUTH``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils import z85

from swarmdeploy.transport.zmq_common import ZAP_DOMAIN

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_VERSION = b"1.0"
_STOP_ENDPOINT = "inproc://swarmdeploy.zap.stop"


class ZapHandler:
    """Answers ZAP requests with ``lookup(z85 public key) -> target id | None``.

    The handler answers in a thread of its own, not on the manager's event loop: libzmq
    holds a handshake until its ZAP request is answered, and a busy event loop (a connect
    storm of thousands of agents, a bulk deployment) delayed the answers past the
    handshake timeout. ``lookup`` is called in that thread; it must be safe to call while
    the event loop changes what it looks up. The manager passes :meth:`AllowList.owner`,
    one ``dict.get`` on a mapping the event loop changes by single ``dict`` operations, each
    atomic under the interpreter lock: a key revoked before ``revoke`` re-binds the sockets
    is refused to every handshake on the new sockets.
    """

    def __init__(self, ctx: zmq.Context[Any], lookup: Callable[[str], str | None]) -> None:
        self._ctx = ctx
        self._lookup = lookup
        self._stop: zmq.Socket[bytes] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the handler and start its thread; must happen before the sockets it
        protects are bound."""
        sock: zmq.Socket[bytes] = zmq.Socket(self._ctx, zmq.REP)
        sock.linger = 0
        sock.bind(ZAP_ENDPOINT)
        stop_in: zmq.Socket[bytes] = zmq.Socket(self._ctx, zmq.PAIR)
        stop_in.linger = 0
        stop_in.bind(_STOP_ENDPOINT)
        stop: zmq.Socket[bytes] = zmq.Socket(self._ctx, zmq.PAIR)
        stop.linger = 0
        stop.connect(_STOP_ENDPOINT)
        self._stop = stop
        # the thread owns ``sock`` and ``stop_in`` from here on (sockets are not thread-safe)
        self._thread = threading.Thread(
            target=self._serve, args=(sock, stop_in), name="swarmdeploy-zap", daemon=True
        )
        self._thread.start()

    def _serve(self, sock: zmq.Socket[bytes], stop_in: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(stop_in, zmq.POLLIN)
        try:
            while stop_in not in dict(poller.poll()):
                frames = sock.recv_multipart()
                try:
                    reply = self.answer(frames)
                except Exception:  # a REP socket must answer every request, whatever happens
                    log.exception("ZAP handler failed; refusing the handshake")
                    request_id = frames[1] if len(frames) > 1 else b""
                    reply = [_VERSION, request_id, b"500", b"internal error", b"", b""]
                sock.send_multipart(reply)
        finally:
            sock.close(linger=0)
            stop_in.close(linger=0)

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
        """Stop answering and close the sockets; idempotent."""
        if self._stop is not None:
            self._stop.send(b"")
            if self._thread is not None:
                self._thread.join()
            self._stop.close(linger=0)
            self._stop = None
            self._thread = None
