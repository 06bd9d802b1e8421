"""``/health`` (public) and ``/metrics`` (Prometheus text; viewer role)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from swarmdeploy import __version__
from swarmdeploy.manager.api.deps import ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import HealthPublic
from swarmdeploy.storage.errors import StorageError

router = APIRouter(tags=["system"])


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "The database does not answer."}},
)
async def health(services: ServicesDep) -> Any:
    """Liveness; 503 when the database does not answer."""
    try:
        await services.storage.ping()
    except StorageError:
        body = {"status": "unavailable", "storage": "unavailable", "version": __version__}
        return JSONResponse(body, status_code=503)
    return {"status": "ok", "storage": "ok", "version": __version__}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses(401, 403),
    },
)
async def metrics(services: ServicesDep, _: Viewer) -> PlainTextResponse:
    """Prometheus text exposition (docs/metrics.md): HTTP latency by route template and
    status class, agent link traffic and queues, storage latency, logs, events,
    registrations, deployments by state, blob store size and process metrics."""
    text = await services.stats.exposition()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
