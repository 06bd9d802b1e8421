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

The server closes the stream with 1001 when it shuts down, 1008 at once when the API key the
stream was opened with is deleted on this manager (and within ``events_recheck_s``, 30 s, when
the credential stops being valid anywhere else: another replica deleted the key, an OpenID
Connect token expired, a role was lowered), and 1013 when more than ``--event-queue-bytes``
of events waited for the client (``manager.events``).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from swarmdeploy.manager.api.deps import authenticate
from swarmdeploy.manager.api.errors import error_body
from swarmdeploy.manager.errors import Forbidden, ManagerError
from swarmdeploy.manager.events import TOPICS, CloseReason, Subscription, SubscriptionClosed
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.services.log_access import LogAccess

log = logging.getLogger(__name__)

router = APIRouter()

_CLOSE_TEXT = {
    CloseReason.REVOKED: "the credential was revoked",
    CloseReason.TOO_SLOW: "too many events waited for this client",
}


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
        await websocket.send_text(item.text)


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
        key_id=principal.key_id,
    )
    credential = _credential(websocket, access_token) or ""
    recheck = asyncio.create_task(_recheck(services, credential, sub))
    try:
        await websocket.accept()
        await _stream(websocket, sub, principal.name)
    except WebSocketDisconnect:
        pass
    finally:
        recheck.cancel()
        await asyncio.gather(recheck, return_exceptions=True)
        sub.close()


async def _recheck(services: Services, credential: str, sub: Subscription) -> None:
    """Authenticate the stream's credential again every ``events_recheck_s``; close the
    subscription (1008) once it is no longer valid for the viewer role."""
    while True:
        await asyncio.sleep(services.settings.events_recheck_s)
        try:
            still = (await authenticate(services, credential)).allows("viewer")
        except ManagerError:
            still = False
        if not still:
            sub.close(CloseReason.REVOKED)
            return


async def _stream(websocket: WebSocket, sub: Subscription, who: str) -> None:
    """Send events until the client leaves or the subscription ends (then close with the
    subscription's reason: shutdown 1001, key deleted 1008, too slow 1013)."""
    pump = asyncio.create_task(_pump(websocket, sub))
    drain = asyncio.create_task(_drain_client(websocket))
    ended = asyncio.create_task(sub.ended.wait())
    done, pending = await asyncio.wait({pump, drain, ended}, return_when=asyncio.FIRST_COMPLETED)
    if ended in done and sub.reason is CloseReason.SHUTDOWN and not pump.done():
        done, pending = await asyncio.wait({pump, drain}, return_when=asyncio.FIRST_COMPLETED)
    for job in pending:
        job.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for job in done:
        failure = None if job.cancelled() else job.exception()
        if failure is not None and not isinstance(failure, WebSocketDisconnect):
            log.info("event stream for %s ended: %r", who, failure)
    if drain in done or sub.reason in (None, CloseReason.CLIENT):
        return
    await websocket.close(code=sub.reason.value, reason=_CLOSE_TEXT.get(sub.reason, ""))
