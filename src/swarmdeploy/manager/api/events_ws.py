"""``/events``: the WebSocket of live events (seed 003 §4.1 "Events").

Query parameters: ``topics`` (comma list; default all), ``target``, ``task`` (filters),
``access_token`` (alternative to the ``Authorization: Bearer`` header for browsers). Needs
the viewer role; terminal output reaches only the operator who ran the command and admins
(``services/log_access.py``). Refusals happen before the upgrade: 401/403/422 with the
usual JSON error body where the server supports denial responses (uvicorn does), else close
code 1008.

Server -> client text frames: ``{"topic": ..., "payload": ...}``; after events were dropped
for this (slow) client: ``{"topic": "dropped", "payload": {"count": N}}``. Messages sent by
the client are ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from swarmdeploy.manager.api.deps import authenticate
from swarmdeploy.manager.api.errors import error_body
from swarmdeploy.manager.errors import Forbidden, ManagerError
from swarmdeploy.manager.events import TOPICS, Subscription, SubscriptionClosed
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.services.log_access import LogAccess

log = logging.getLogger(__name__)

router = APIRouter()


async def _refuse(websocket: WebSocket, status: int, code: str, message: str) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(error_body(message, code), status))
    else:
        await websocket.close(code=1008, reason=message[:120])


def _credential(websocket: WebSocket, access_token: str | None) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return access_token


async def _pump(websocket: WebSocket, sub: Subscription) -> None:
    while True:
        try:
            item = await sub.get()
        except SubscriptionClosed:
            return
        await websocket.send_text(json.dumps(item.message(), separators=(",", ":")))


async def _drain_client(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


@router.websocket("/events")
async def events(
    websocket: WebSocket,
    topics: str | None = None,
    target: str | None = None,
    task: str | None = None,
    access_token: str | None = None,
) -> None:
    """Stream events to one client until it disconnects or the server shuts down."""
    services: Services = websocket.app.state.services
    try:
        principal = await authenticate(services, _credential(websocket, access_token))
        if not principal.allows("viewer"):
            raise Forbidden("the viewer role is needed")
    except ManagerError as exc:
        await _refuse(websocket, exc.status, exc.code, exc.message)
        return
    wanted = [t.strip() for t in (topics or "").split(",") if t.strip()] or sorted(TOPICS)
    unknown = sorted(set(wanted) - TOPICS)
    if unknown:
        message = f"unknown topic(s) {', '.join(unknown)}; known: {', '.join(sorted(TOPICS))}"
        await _refuse(websocket, 422, "validation_error", message)
        return
    sub = services.events.subscribe(
        wanted,
        target=target or None,
        task=task or None,
        audience=LogAccess.audience(principal),
    )
    try:
        await websocket.accept()
        pump = asyncio.create_task(_pump(websocket, sub))
        drain = asyncio.create_task(_drain_client(websocket))
        done, pending = await asyncio.wait({pump, drain}, return_when=asyncio.FIRST_COMPLETED)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for job in done:
            failure = job.exception()
            if failure is not None and not isinstance(failure, WebSocketDisconnect):
                log.info("event stream for %s ended: %r", principal.name, failure)
        if pump in done and pump.exception() is None:
            await websocket.close(code=1001)  # server shutting down
    except WebSocketDisconnect:
        pass
    finally:
        sub.close()
