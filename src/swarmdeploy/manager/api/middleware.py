"""Pure ASGI middleware: request-body limits, the 500 safety net and request counting.

Body limits are enforced **while reading** (a lying or absent ``Content-Length`` does not
help): the wrapped ``receive`` raises a 413 ``HTTPException`` as soon as the running total
passes the limit, which the JSON error handlers turn into ``{"code": "body_too_large"}``. A
declared ``Content-Length`` above the limit is refused before the application runs.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarmdeploy.manager.api.errors import error_body
from swarmdeploy.manager.services.metrics import UNMATCHED_ROUTE, Metrics

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


async def _send_json(send: Send, status: int, body: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Limit request bodies to ``default_bytes``, or to the limit of the first matching
    ``(method, path regex, bytes)`` rule."""

    def __init__(
        self, app: ASGIApp, *, default_bytes: int, rules: Sequence[tuple[str, str, int]] = ()
    ) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.rules = [(m, re.compile(p), n) for m, p, n in rules]

    def limit_for(self, method: str, path: str) -> int:
        """The body limit for a request."""
        for rule_method, pattern, limit in self.rules:
            if method == rule_method and pattern.fullmatch(path):
                return limit
        return self.default_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            message = f"the request body is larger than {limit} bytes"
            await _send_json(send, 413, error_body(message, "body_too_large"))
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited_receive, send)


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request (``/targets/{target_id}``): its
    path with each path parameter's value put back as ``{name}``; ``PREFIX/{path}`` for a
    mounted app; :data:`UNMATCHED_ROUTE` when no route matched. A raw path is never a label
    (unbounded)."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    if isinstance(route, Mount):  # a mounted app that routed no further: its prefix only
        return f"{route.path}/{{path}}"
    path = str(scope.get("path", ""))
    params = scope.get("path_params") or {}
    for name, value in sorted(params.items(), key=lambda item: -len(str(item[1]))):
        text = str(value)
        at = path.rfind(text) if text else -1
        if at >= 0:
            path = f"{path[:at]}{{{name}}}{path[at + len(text) :]}"
    return path


class ErrorAndMetricsMiddleware:
    """Times answered requests (by method, route template and status class) and turns any
    unhandled exception into a JSON 500 without details (the traceback goes to the log
    only)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        status = 500
        begun = time.perf_counter()

        async def counting_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:  # top of the request: log, answer 500, never leak the traceback
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not started:
                body = error_body("internal server error", "internal_error")
                await _send_json(counting_send, 500, body)
        finally:
            elapsed = time.perf_counter() - begun
            route = route_template(scope)
            self.metrics.observe_request(scope["method"], route, status, elapsed)
