"""``/targets``: list, read, partial update, delete (= revoke), and requests to a target."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from swarmdeploy.manager.api.answers import targets_page
from swarmdeploy.manager.api.deps import (
    Admin,
    Operator,
    PageQuery,
    PerPageQuery,
    ServicesDep,
    Viewer,
)
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import (
    CommandCreate,
    HealthHistoryOut,
    ListOf,
    MessagePublic,
    TargetPublic,
    TargetTaskOut,
    TargetUpdate,
)
from swarmdeploy.manager.api.target_filter import select_targets
from swarmdeploy.manager.api.targets_bulk import TargetsBulkResult, TargetsBulkUpdate, bulk_update
from swarmdeploy.manager.services.registry import target_json

router = APIRouter(prefix="/targets", tags=["targets"])

TargetId = Annotated[str, Path(max_length=128, description="Target id.")]
_QUEUED = {**responses(401, 403, 404), 503: {"description": "The target's request queue is full."}}


@router.get("", response_model=ListOf[TargetPublic], responses=responses(401, 403))
async def list_targets(
    services: ServicesDep,
    _: Viewer,
    tags: Annotated[
        str | None, Query(max_length=4096, description="Comma-separated; a target needs all.")
    ] = None,
    search: Annotated[
        str | None, Query(max_length=128, description="Substring of id or name.")
    ] = None,
    select: Annotated[
        str | None,
        Query(
            max_length=65536,
            description="A selector (docs/selectors.md), e.g. `camera,+outdoor,!lab`.",
        ),
    ] = None,
    page: PageQuery = 1,
    per_page: PerPageQuery = 100,
) -> Response:
    """Targets sorted by id, filtered by tags (AND), a search string and a selector."""
    result = await select_targets(
        services, tags=tags, search=search, select=select, page=page, per_page=per_page
    )
    return targets_page(result.items, total=result.total, page=page, per_page=per_page)


@router.post("/bulk", response_model=TargetsBulkResult, responses=responses(400, 401, 403))
async def bulk_update_targets(
    body: TargetsBulkUpdate, services: ServicesDep, who: Operator
) -> dict[str, Any]:
    """Change tags (add, remove or replace) and/or the location of every selected target:
    ``ids``, or the filter of ``GET /targets`` (``tags``, ``search``: the same code, so the
    list shows what changes). Audited; answers the counts and the ids changed."""
    return await bulk_update(services, who, body)


@router.get("/{target_id}", response_model=TargetPublic, responses=responses(401, 403, 404))
async def get_target(target_id: TargetId, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """One target, with its newest tasks."""
    record = await services.registry.get(target_id)
    (view,) = await services.registry.with_recent([record])
    return target_json(view)


@router.get(
    "/{target_id}/tasks",
    response_model=ListOf[TargetTaskOut],
    responses=responses(401, 403, 404),
)
async def target_tasks(
    target_id: TargetId,
    services: ServicesDep,
    _: Viewer,
    page: PageQuery = 1,
    per_page: PerPageQuery = 50,
) -> dict[str, Any]:
    """The target's deployment history: its state in every task it was part of, newest
    task first."""
    result = await services.registry.history(target_id, page=page, per_page=per_page)
    items = [
        {
            "task": row.task_id,
            "role": row.role,
            "state": row.state,
            "reason": row.reason,
            "updatedAt": row.updated_at,
            "description": task.description if task else "",
            "createdAt": task.created_at if task else None,
            "createdBy": task.created_by if task else "",
        }
        for row, task in result.items
    ]
    return {"total": result.total, "items": items, "page": page, "perPage": per_page}


@router.get(
    "/{target_id}/health",
    response_model=HealthHistoryOut,
    responses=responses(401, 403, 404),
)
async def target_health(
    target_id: TargetId,
    services: ServicesDep,
    _: Viewer,
    since: Annotated[
        int, Query(ge=0, description="Samples at or after this time (ms); default: all kept.")
    ] = 0,
) -> dict[str, Any]:
    """The target's health history (CPU, load, memory, disk, agent memory), oldest first:
    one sample per ``--health-sample`` seconds, kept for ``--health-history`` seconds."""
    await services.registry.get(target_id)
    samples = await services.health.series(target_id, since_ms=since)
    return {
        "target": target_id,
        "sampleIntervalS": services.settings.health_sample_s,
        "items": [
            {
                "at": s.at_ms,
                "cpuPercent": s.cpu_percent,
                "load1m": s.load_1m,
                "memTotalBytes": s.mem_total_bytes,
                "memAvailableBytes": s.mem_available_bytes,
                "diskTotalBytes": s.disk_total_bytes,
                "diskFreeBytes": s.disk_free_bytes,
                "agentRssBytes": s.agent_rss_bytes,
            }
            for s in samples
        ],
    }


@router.put("/{target_id}", response_model=TargetPublic, responses=responses(401, 403, 404))
async def update_target(
    target_id: TargetId, body: TargetUpdate, services: ServicesDep, _: Operator
) -> dict[str, Any]:
    """Change name, tags and/or location; fields not given stay as they are, and the
    device's keys are never dropped (cpswarm-original.md §10.2 #8)."""
    changes = body.model_dump(include=body.model_fields_set)
    indoor = changes.pop("indoor", False)
    if indoor is not False:  # given: a place on a plan, or null to take it off
        await services.registry.get(target_id)
        if indoor is None:
            await services.floorplans.place(target_id, None, 0, 0)
        else:
            await services.floorplans.place(target_id, indoor["plan"], indoor["x"], indoor["y"])
    record = await services.registry.update(target_id, changes)
    (view,) = await services.registry.with_recent([record])
    return target_json(view)


@router.delete(
    "/{target_id}", status_code=204, response_class=Response, responses=responses(401, 403, 404)
)
async def delete_target(target_id: TargetId, services: ServicesDep, who: Admin) -> Response:
    """Delete the target and revoke it at once: its key is dropped, its connection refused
    and its queued requests discarded. Its logs stay."""
    await services.registry.delete(target_id)
    await services.audit.append(who, "target.delete", target_id)
    return Response(status_code=204)


@router.put("/{target_id}/logs", status_code=202, response_model=MessagePublic, responses=_QUEUED)
async def request_logs(target_id: TargetId, services: ServicesDep, _: Operator) -> dict[str, str]:
    """Ask the agent for its buffered logs; they arrive on ``/events`` and in ``/logs``."""
    await services.control.request_logs(target_id)
    return {"message": f"requested logs from {target_id}"}


@router.put("/{target_id}/stop", status_code=202, response_model=MessagePublic, responses=_QUEUED)
@router.post(  # the same: people type either (docs/api.md)
    "/{target_id}/stop",
    status_code=202,
    response_model=MessagePublic,
    responses=_QUEUED,
    operation_id="stop_target_post",
)
async def stop_target(target_id: TargetId, services: ServicesDep, who: Operator) -> dict[str, str]:
    """Stop every process the target runs for its deployments."""
    await services.control.stop(target_id, who)
    return {"message": f"sent stop request to {target_id}"}


@router.put(
    "/{target_id}/command", status_code=202, response_model=MessagePublic, responses=_QUEUED
)
async def run_command(
    target_id: TargetId, body: CommandCreate, services: ServicesDep, who: Operator
) -> dict[str, str]:
    """Run one terminal command on the target (audited as a ``$manager`` log line naming
    the operator); output arrives as ``logs`` events with task ``terminal``."""
    await services.control.command(target_id, body.command, who)
    return {"message": f"sent command to {target_id}"}


@router.delete(
    "/{target_id}/command", status_code=202, response_model=MessagePublic, responses=_QUEUED
)
async def stop_command(target_id: TargetId, services: ServicesDep, who: Operator) -> dict[str, str]:
    """Kill the target's running terminal command (its whole process group)."""
    await services.control.stop_command(target_id, who)
    return {"message": f"sent terminal stop to {target_id}"}
