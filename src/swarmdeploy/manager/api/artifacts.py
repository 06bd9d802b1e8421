"""``/artifacts``: build artifacts with their provenance; list, look up, download (viewer)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from swarmdeploy.manager.api.deps import PageQuery, PerPageQuery, ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import ArtifactDetail, ArtifactPublic, ListOf
from swarmdeploy.manager.services.artifacts import ArtifactService, artifact_json
from swarmdeploy.manager.services.container import Services

router = APIRouter(prefix="/artifacts", tags=["artifacts"])

Digest = Annotated[
    str,
    Path(
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the artifact, 64 lower-case hex characters.",
    ),
]


_SAFE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


def _file_name(name: str) -> str:
    """The name as a header-safe file name (the build host chose it)."""
    return name if _SAFE_NAME.match(name) else "artifact.tar.gz"


def _service(services: Services) -> ArtifactService:
    return ArtifactService(services.storage, services.blobs)


@router.get("", response_model=ListOf[ArtifactPublic], responses=responses(401, 403))
async def list_artifacts(
    services: ServicesDep,
    _: Viewer,
    task: Annotated[
        str | None, Query(max_length=128, description="Only the artifacts of this task's build.")
    ] = None,
    page: PageQuery = 1,
    per_page: PerPageQuery = 100,
) -> dict[str, Any]:
    """Artifacts delivered by builds, oldest build first (an unknown task lists none)."""
    result = await _service(services).list(task_id=task, page=page, per_page=per_page)
    items = [artifact_json(r) for r in result.items]
    return {"total": result.total, "items": items, "page": page, "perPage": per_page}


@router.get("/{sha256}", response_model=ArtifactDetail, responses=responses(401, 403, 404))
async def get_artifact(sha256: Digest, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """An artifact's provenance (its first build) and every task whose build produced it."""
    detail = await _service(services).get(sha256)
    return {**artifact_json(detail.first), "tasks": detail.tasks}


@router.get(
    "/{sha256}/download",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The artifact (a tar.gz), streamed.",
        },
        **responses(401, 403, 404),
    },
)
async def download_artifact(sha256: Digest, services: ServicesDep, _: Viewer) -> StreamingResponse:
    """The artifact's bytes (``application/gzip``, with its length and file name)."""
    download = await _service(services).open(sha256)
    headers = {
        "Content-Length": str(download.size),
        "Content-Disposition": f'attachment; filename="{_file_name(download.name)}"',
    }
    return StreamingResponse(download.chunks, media_type="application/gzip", headers=headers)
