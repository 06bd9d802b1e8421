"""``/floorplans``: indoor maps (seed 003 §4.4). Upload a PNG or JPEG floor plan as the raw
request body, list, fetch the image, delete; devices are placed on a plan with
``PUT /targets/{id}`` (``indoor``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from swarmdeploy.manager.api.deps import Operator, ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import FloorPlanPublic, ListOf
from swarmdeploy.storage.records import FloorPlanRecord

router = APIRouter(prefix="/floorplans", tags=["indoor maps"])
PlanId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


def floorplan_json(plan: FloorPlanRecord) -> dict[str, Any]:
    """The API document of a plan (without the image)."""
    return {
        "id": plan.id,
        "name": plan.name,
        "mediaType": plan.media_type,
        "width": plan.width,
        "height": plan.height,
        "createdAt": plan.created_at,
    }


@router.post(
    "",
    status_code=201,
    response_model=FloorPlanPublic,
    responses=responses(401, 403, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def create_floorplan(
    request: Request,
    services: ServicesDep,
    _: Operator,
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")],
) -> dict[str, Any]:
    """Upload a floor plan: the image (PNG or JPEG, at most 8 MiB) is the body; its size in
    pixels is read from the image."""
    plan = await services.floorplans.add(name, await request.body())
    return floorplan_json(plan)


@router.get("", response_model=ListOf[FloorPlanPublic], responses=responses(401, 403))
async def list_floorplans(services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """Every floor plan, by name."""
    items = [floorplan_json(p) for p in await services.floorplans.list()]
    return {"total": len(items), "items": items, "page": 1, "perPage": max(len(items), 1)}


@router.get(
    "/{plan_id}/image",
    response_class=Response,
    responses={**responses(401, 403, 404), 200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
async def floorplan_image(plan_id: PlanId, services: ServicesDep, _: Viewer) -> Response:
    """The plan's image."""
    plan = await services.floorplans.get(plan_id)
    headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(plan.image, media_type=plan.media_type, headers=headers)


@router.delete(
    "/{plan_id}", status_code=204, response_class=Response, responses=responses(401, 403, 404)
)
async def delete_floorplan(plan_id: PlanId, services: ServicesDep, _: Operator) -> Response:
    """Delete a plan; devices on it lose their indoor position."""
    await services.floorplans.delete(plan_id)
    return Response(status_code=204)
