"""``/events`` over the network for the CLI: a WebSocket stream that reconnects after a drop.

:class:`EventStream` is synchronous (the CLI has no event loop). :meth:`EventStream.frames`
waits up to a timeout and returns the frames (``{"topic", "payload"}``) that arrived; a
dropped connection is opened again on the next call, after a growing pause (0.5 s up to
5 s), and :attr:`EventStream.reconnects` counts the reopenings. When the manager refuses the
stream itself (401/403/422: a bad key or topic) :class:`ApiError` is raised, since
reconnecting would not help; when the stream cannot be opened at all (no WebSocket support on
a proxy, an old manager), :attr:`EventStream.available` turns false and callers poll the REST
API instead (``docs/cli.md`` "Live views").
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from swarmdeploy.client.rest import ApiError, ManagerClient

#: Pauses before reopening a dropped stream grow from the first to the last.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0
#: Opening attempts that fail before the stream is declared unavailable (polling instead).
OPEN_ATTEMPTS = 3
OPEN_TIMEOUT_S = 10.0


def events_url(base_url: str, params: Mapping[str, str]) -> str:
    """The ``ws://`` (``wss://`` for an ``https://`` manager) URL of ``/events?params``."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/events"
    return urlunsplit((scheme, parts.netloc, path, urlencode(dict(params)), ""))


class EventStream:
    """One subscription to ``/events`` (see the module docstring); use as a context manager
    or call :meth:`close`."""

    def __init__(
        self,
        client: ManagerClient,
        params: Mapping[str, str],
        *,
        open_attempts: int = OPEN_ATTEMPTS,
    ) -> None:
        self._url = events_url(client.base_url, params)
        key = client.api_key
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._ssl = client.ssl_context
        self._open_attempts = open_attempts
        self._conn: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self._failures = 0
        self._pause_s = RECONNECT_FIRST_S
        self._retry_at = 0.0
        #: False once opening failed :data:`OPEN_ATTEMPTS` times in a row: poll instead.
        self.available = True
        #: How many times a dropped stream was opened again.
        self.reconnects = 0
        self._opened_before = False

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn = None
        stack, self._stack = self._stack, contextlib.ExitStack()
        with contextlib.suppress(Exception):
            stack.close()

    def ensure_open(self) -> bool:
        """Open the stream if it is closed and a retry is due; whether it is open now.
        Raises :class:`ApiError` when the manager refuses the subscription."""
        if self._conn is not None:
            return True
        if not self.available or time.monotonic() < self._retry_at:
            return False
        try:  # entered as a context manager (websockets >= 17.1 wants that), left in close()
            self._conn = self._stack.enter_context(
                connect(
                    self._url,
                    additional_headers=self._headers,
                    ssl=self._ssl,
                    open_timeout=OPEN_TIMEOUT_S,
                    proxy=None,
                )
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403, 422):
                raise ApiError(status, _refusal_text(exc.response.body)) from None
            self._failed()
            return False
        except (OSError, InvalidHandshake, TimeoutError):
            self._failed()
            return False
        if self._opened_before:
            self.reconnects += 1
        self._opened_before = True
        self._failures, self._pause_s = 0, RECONNECT_FIRST_S
        return True

    def wait_open(self) -> None:
        """Open the stream, retrying as :meth:`ensure_open` does; :class:`ApiError` when it
        cannot be opened (for callers that have no polling to fall back on)."""
        while not self.ensure_open():
            if not self.available:
                raise ApiError(0, f"cannot open the manager's event stream {self._url}")
            time.sleep(max(0.0, self._retry_at - time.monotonic()))  # the retry pause

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self._open_attempts and not self._opened_before:
            self.available = False
        self._retry_at = time.monotonic() + self._pause_s
        self._pause_s = min(self._pause_s * 2, RECONNECT_MAX_S)

    def frames(self, timeout_s: float) -> list[dict[str, Any]]:
        """The frames that arrive within ``timeout_s`` (returns as soon as one batch is in);
        ``[]`` on a timeout, a drop (reopened on a later call) or an unavailable stream."""
        deadline = time.monotonic() + timeout_s
        if not self.ensure_open():
            until = deadline if not self.available else min(deadline, self._retry_at)
            time.sleep(max(0.0, until - time.monotonic()))  # polling callers' pace
            return []
        assert self._conn is not None
        got: list[dict[str, Any]] = []
        wait_s = max(0.0, deadline - time.monotonic())
        try:
            while True:
                try:
                    text = self._conn.recv(timeout=wait_s)
                except TimeoutError:
                    return got
                frame = json.loads(text)
                if isinstance(frame, dict):
                    got.append(frame)
                wait_s = 0.0  # drain what is already here, then return
        except (ConnectionClosed, OSError):
            self.close()
            self._retry_at = time.monotonic() + self._pause_s
            return got


def _refusal_text(body: bytes | bytearray | None) -> str:
    """The ``error`` message of a refused upgrade's JSON body."""
    try:
        doc = json.loads(body or b"")
    except ValueError:
        return bytes(body or b"").decode(errors="replace") or "the events stream was refused"
    if isinstance(doc, dict) and doc.get("error"):
        return str(doc["error"])
    return "the events stream was refused"
