"""The plain ASGI pieces of the manager's HTTP link (:mod:`.http_manager`, :mod:`.http_payload`).

A request the link will not serve raises :class:`Refused` with its HTTP status and a stable
error code; the ASGI entry point answers it as a small JSON document, with ``Retry-After``
where the agent should come back later.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Refused(Exception):
    """A request the link answers with ``status`` and the error ``code`` (no messages)."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after_s = status, code, retry_after_s


def headers_of(scope: Scope) -> dict[str, str]:
    """The request headers, names in lower case (the last of repeated ones)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; :class:`Refused` (413) past ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise Refused(400, "disconnected", "the client went away")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, "body_too_large", f"the request body is larger than {limit} bytes")
        parts.append(chunk)
        if not event.get("more_body", False):
            return b"".join(parts)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Answer with ``body`` in one piece."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_refusal(send: Send, exc: Refused) -> None:
    """Answer a refusal: ``{"code", "message"}`` and ``Retry-After`` when it has one."""
    body = json.dumps({"code": exc.code, "message": str(exc)}).encode()
    headers = [(b"content-type", b"application/json")]
    if exc.retry_after_s:
        headers.append((b"retry-after", str(exc.retry_after_s).encode()))
    await respond(send, exc.status, body, headers)
