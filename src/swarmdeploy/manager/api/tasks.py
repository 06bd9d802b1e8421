"""``/tasks`` (and its alias ``/orders``): create, list, read, stop, delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from swarmdeploy.manager.api.bodies import decode_document
from swarmdeploy.manager.api.deps import Operator, PageQuery, PerPageQuery, ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import ListOf, StopPublic, TaskPublic, TaskSummary
from swarmdeploy.manager.services.tasks import task_json

TaskId = Annotated[str, Path(max_length=128, description="Task id, e.g. swift-otter-3f9a.")]

#: Component name of the task descriptor schema in ``/openapi.json`` (see ``api.openapi``).
DESCRIPTOR_REF = "#/components/schemas/TaskCreate"


def _create_body(*, always_yaml: bool) -> dict[str, Any]:
    schema = {"$ref": DESCRIPTOR_REF}
    content = {
        "application/yaml": {"schema": schema},
        "text/yaml": {"schema": schema},
    }
    if not always_yaml:
        content = {"application/json": {"schema": schema}, **content}
    return {"requestBody": {"required": True, "content": content}}


def build_tasks_router(*, orders: bool) -> APIRouter:
    """The task routes; ``orders=True`` builds the ``/orders`` alias, whose POST reads every
    body as YAML (the original tool's order documents, whatever their Content-Type)."""
    noun = "order" if orders else "task"
    router = APIRouter(tags=["orders" if orders else "tasks"])

    @router.get("", response_model=ListOf[TaskSummary], responses=responses(401, 403))
    async def list_tasks(
        services: ServicesDep,
        _: Viewer,
        description: Annotated[str | None, Query(max_length=1000)] = None,
        sort_order: Annotated[Literal["asc", "desc"], Query(alias="sortOrder")] = "asc",
        page: PageQuery = 1,
        per_page: PerPageQuery = 100,
    ) -> dict[str, Any]:
        """Tasks by creation time; ``description`` is a full-text search (all words)."""
        result = await services.tasks.list(
            search=description, sort_order=sort_order, page=page, per_page=per_page
        )
        items = [task_json(v, with_targets=False) for v in result.items]
        return {"total": result.total, "items": items, "page": page, "perPage": per_page}

    @router.post(
        "",
        status_code=201,
        response_model=TaskPublic,
        responses=responses(400, 401, 403, 413, 415),
        openapi_extra=_create_body(always_yaml=orders),
    )
    async def create_task(request: Request, services: ServicesDep, who: Operator) -> dict[str, Any]:
        """Submit a task descriptor (JSON or YAML); answers with the stored task and its id.

        Validation errors are 422 with ``path`` naming the field; a deploy section that
        matches no registered target is a 422 at ``$.deploy.target``."""
        document = await decode_document(request, always_yaml=orders)
        view = await services.tasks.create(document, created_by=who.audit_name)
        return task_json(view, with_targets=True)

    @router.get("/{task_id}", response_model=TaskPublic, responses=responses(401, 403, 404))
    async def get_task(task_id: TaskId, services: ServicesDep, _: Viewer) -> dict[str, Any]:
        """A task with its status summary and the state of every target."""
        return task_json(await services.tasks.get(task_id), with_targets=True)

    @router.delete(
        "/{task_id}",
        status_code=204,
        response_class=Response,
        responses=responses(401, 403, 404, 409),
    )
    async def delete_task(task_id: TaskId, services: ServicesDep, _: Operator) -> Response:
        """Delete a task, its per-target states and its logs. 409 while any target is in an
        active state (transferring, installing, installed, running, building)."""
        await services.tasks.delete(task_id)
        return Response(status_code=204)

    @router.put(
        "/{task_id}/stop",
        status_code=202,
        response_model=StopPublic,
        responses=responses(401, 403, 404),
    )
    async def stop_task(task_id: TaskId, services: ServicesDep, who: Operator) -> dict[str, Any]:
        """Stop the task on every target; targets not yet reached stop at once, the others
        are sent a stop request (their state becomes ``stopped`` when they confirm)."""
        outcome = await services.tasks.stop(task_id, who)
        return {
            "message": f"stop of {noun} {task_id}: {outcome.stopped} stopped, "
            f"{outcome.requested} asked, {len(outcome.refused)} queue(s) full",
            "stopped": outcome.stopped,
            "requested": outcome.requested,
            "refused": outcome.refused,
        }

    return router
