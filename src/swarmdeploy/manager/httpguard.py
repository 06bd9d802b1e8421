"""Connection guards for the manager's HTTP server (issue 9, item 12: slowloris).

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no deadline for
a request head: a connection that sends nothing, or one header byte every few seconds, is
kept forever, and enough of them exhaust the file descriptors (with a lowered limit the
manager stopped answering). :func:`guarded_protocol` returns uvicorn's h11 protocol with:

* a **header deadline**: the request line and headers must be complete within
  ``header_timeout_s`` of the connection (or of the first byte of the next request on a
  kept-alive connection) -- trickling bytes does not extend it;
* a **body idle timeout**: while a request body is being received, the client must send
  something at least every ``body_timeout_s`` (a slow but moving upload is fine; the
  deadline is not charged while the server itself paused reading);
* a **connection cap**: beyond ``max_connections`` open connections a new one is closed at
  once, before it costs more than its socket.

Timed-out connections are closed without an answer; one INFO line per kind and minute says
how many were (not one line per connection).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

_REPORT_EVERY_S = 60.0


class _Counter:
    """Counts closed connections by kind; logs one summary line a minute at most."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._last_report = 0.0

    def add(self, kind: str) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        if now - self._last_report >= _REPORT_EVERY_S:
            self._last_report = now
            summary = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
            log.info("closed HTTP connections (totals): %s", summary)


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a header deadline, a body idle timeout and a connection cap (the
    limits are class attributes, set by :func:`guarded_protocol`)."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    max_connections = 1000
    counter = _Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self.counter.add("over the connection cap")
            transport.abort()
            return
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "header timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.transport is None:  # refused in connection_made
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle now: uvicorn's keep-alive timeout applies

    def _follow(self) -> None:
        """Arm, keep or drop the guard for the state the client is in now."""
        state = self.conn.their_state
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            self._disarm()  # closed, or handed over to the WebSocket protocol
        elif state is h11.IDLE:
            if self._guard is None:  # first byte of a request: the head deadline starts
                self._arm(self.header_timeout_s, "header timeout")
        elif state is h11.SEND_BODY:
            self._arm(self.body_timeout_s, "body timeout")  # restarted by every read
        else:
            self._disarm()  # request complete, or switching to WebSocket

    def _arm(self, delay_s: float, kind: str) -> None:
        self._disarm()
        self._guard = self.loop.call_later(delay_s, self._expire, kind)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _expire(self, kind: str) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        if kind == "body timeout" and self.flow.read_paused:
            self._arm(self.body_timeout_s, kind)  # we stopped reading, not the client
            return
        self.counter.add(kind)
        self.transport.close()


def guarded_protocol(
    *, header_timeout_s: float, body_timeout_s: float, max_connections: int
) -> type[H11Protocol]:
    """A :class:`GuardedH11Protocol` class with these limits (for ``uvicorn.Config(http=)``)."""
    limits = {
        "header_timeout_s": header_timeout_s,
        "body_timeout_s": body_timeout_s,
        "max_connections": max_connections,
        "counter": _Counter(),
    }
    return type("GuardedH11Protocol", (GuardedH11Protocol,), limits)
