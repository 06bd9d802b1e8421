"""``/events`` inside the manager's process: an ASGI WebSocket session driven in memory.

``httpx.ASGITransport`` has no WebSockets, so the GUI, which reaches the API in process,
subscribes through :func:`subscribe`: it speaks the ASGI WebSocket protocol to the manager's
application directly, with the operator's own bearer credential, so the ``/events`` route
authenticates and filters exactly as for a browser or the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from swarmdeploy.client.rest import ApiError

ASGIApp = Callable[..., Any]


@contextlib.asynccontextmanager
async def subscribe(
    app: ASGIApp, api_key: str, params: Mapping[str, str] | None = None
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """Open ``/events?params`` on ``app`` as ``api_key``; yields an iterator of frames
    (``{"topic", "payload"}``). Raises :class:`ApiError` when the route refuses (bad key,
    role, unknown topic). Leaving the context disconnects."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": "/events",
        "raw_path": b"/events",
        "root_path": "",
        "query_string": urlencode(dict(params or {})).encode(),
        "headers": [
            (b"host", b"manager.invalid"),
            (b"authorization", f"Bearer {api_key}".encode()),
        ],
        "server": ("manager.invalid", 80),
        "client": ("127.0.0.1", 0),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
        "state": {},
    }
    await inbox.put({"type": "websocket.connect"})
    session = asyncio.create_task(app(scope, inbox.get, outbox.put))
    try:
        first = await _next(outbox, session)
        if first["type"] != "websocket.accept":
            raise await _refusal(first, outbox, session)

        async def frames() -> AsyncIterator[dict[str, Any]]:
            while True:
                message = await _next(outbox, session)
                if message["type"] == "websocket.close":
                    return
                if message["type"] == "websocket.send" and message.get("text"):
                    yield json.loads(message["text"])

        yield frames()
    finally:
        await inbox.put({"type": "websocket.disconnect", "code": 1000})
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await session


async def _next(
    outbox: asyncio.Queue[dict[str, Any]], session: asyncio.Task[Any]
) -> dict[str, Any]:
    """The next message the app sends; a close if the app ended without one."""
    getter = asyncio.ensure_future(outbox.get())
    done, _ = await asyncio.wait({getter, session}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    if not outbox.empty():
        return outbox.get_nowait()
    return {"type": "websocket.close", "code": 1011}


async def _refusal(
    first: dict[str, Any], outbox: asyncio.Queue[dict[str, Any]], session: asyncio.Task[Any]
) -> ApiError:
    """The error of a refused upgrade (a denial response, or a close with a reason)."""
    if first["type"] == "websocket.http.response.start":
        status = int(first.get("status", 403))
        body = b""
        while True:
            part = await _next(outbox, session)
            body += part.get("body", b"")
            if not part.get("more_body") or part["type"] != "websocket.http.response.body":
                break
        try:
            message = str(json.loads(body).get("error", body.decode()))
        except ValueError:
            message = body.decode(errors="replace")
        return ApiError(status, message or "refused")
    return ApiError(403, str(first.get("reason") or "the events stream was closed"))
