"""``/tasks`` (and its alias ``/orders``): create, list, read, stop, retry, delete; pause,
resume and abort of a staged rollout; rollback of a release."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from swarmdeploy.manager.api.answers import task_answer
from swarmdeploy.manager.api.bodies import decode_document, media_type
from swarmdeploy.manager.api.deps import Operator, PageQuery, PerPageQuery, ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import (
    ListOf,
    RetryCreate,
    RollbackCreate,
    StopPublic,
    TaskPreview,
    TaskPublic,
    TaskSummary,
)
from swarmdeploy.manager.api.multipart import (
    ARCHIVE_PART,
    DESCRIPTOR_PART,
    MULTIPART,
    decode_descriptor,
    read_task_upload,
)
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.services.rollouts import Rollouts
from swarmdeploy.manager.services.tasks import TaskView, task_json

TaskId = Annotated[str, Path(max_length=128, description="Task id, e.g. swift-otter-3f9a.")]

#: Component name of the task descriptor schema in ``/openapi.json`` (see ``api.openapi``).
DESCRIPTOR_REF = "#/components/schemas/TaskCreate"


#: The multipart form of ``POST /tasks`` (descriptor and archive apart; see ``api.multipart``).
_MULTIPART_SCHEMA = {
    "type": "object",
    "required": [DESCRIPTOR_PART, ARCHIVE_PART],
    "properties": {
        DESCRIPTOR_PART: {
            "type": "string",
            "description": "The task descriptor, YAML or JSON, without source.zip.",
        },
        ARCHIVE_PART: {
            "type": "string",
            "format": "binary",
            "description": "The source archive: a zip or tar.gz file.",
        },
    },
}


def _create_body(*, always_yaml: bool) -> dict[str, Any]:
    schema = {"$ref": DESCRIPTOR_REF}
    content: dict[str, Any] = {
        "application/yaml": {"schema": schema},
        "text/yaml": {"schema": schema},
    }
    if not always_yaml:
        content = {"application/json": {"schema": schema}, **content}
    content[MULTIPART] = {"schema": _MULTIPART_SCHEMA}
    return {"requestBody": {"required": True, "content": content}}


async def _create_multipart(request: Request, services: Services, who: Principal) -> TaskView:
    """A task from a multipart body: the archive is streamed to a file that the task
    service moves into the blob store; whatever happens, the file does not stay."""
    settings = services.settings
    upload = await read_task_upload(
        request,
        spool_dir=settings.data_dir / "incoming",
        max_descriptor_bytes=settings.max_body_bytes,
        max_archive_bytes=settings.max_task_body_bytes,
    )
    try:
        guard = services.descriptor_guard
        as_json = upload.descriptor_type == "application/json"
        guard.check(upload.descriptor, yaml=not as_json, what="the descriptor part")
        document = await guard.parse(
            lambda data: decode_descriptor(data, upload.descriptor_type), upload.descriptor
        )
        return await services.tasks.create(
            document, created_by=who.audit_name, archive=upload.archive, principal=who
        )
    finally:
        await asyncio.to_thread(upload.archive.unlink, missing_ok=True)


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
    async def create_task(request: Request, services: ServicesDep, who: Operator) -> Response:
        """Submit a task descriptor (JSON or YAML); answers with the stored task and its id.

        ``multipart/form-data`` sends the archive apart from the descriptor (parts
        ``descriptor`` and ``archive``; the descriptor then has no ``source.zip``).
        Validation errors are 422 with ``path`` naming the field (``multipart.archive`` for
        the archive part); a deploy section that matches no registered target is a 422 at
        ``$.deploy.target``; a body over the task size limit is a 413."""
        if media_type(request) == MULTIPART:
            view = await _create_multipart(request, services, who)
        else:
            document = await decode_document(request, services.descriptor_guard, always_yaml=orders)
            view = await services.tasks.create(document, created_by=who.audit_name, principal=who)
        return task_answer(view, status_code=201)

    @router.post(
        "/preview",
        response_model=TaskPreview,
        responses=responses(400, 401, 403, 413, 415),
        openapi_extra=_create_body(always_yaml=orders),
    )
    async def preview_task(request: Request, services: ServicesDep, _: Operator) -> dict[str, Any]:
        """Validate a descriptor as ``POST`` would (JSON or YAML) and answer which targets it
        would deploy to, without creating anything: for forms that show the matched devices
        before submitting. Errors are the same 422s with ``path``."""
        document = await decode_document(request, services.descriptor_guard, always_yaml=orders)
        targets, build_host = await services.tasks.preview(document)
        return {"total": len(targets), "targets": targets, "buildHost": build_host}

    @router.get("/{task_id}", response_model=TaskPublic, responses=responses(401, 403, 404))
    async def get_task(task_id: TaskId, services: ServicesDep, _: Viewer) -> Response:
        """A task with its status summary and the state of every target."""
        return task_answer(await services.tasks.get(task_id))

    @router.delete(
        "/{task_id}",
        status_code=204,
        response_class=Response,
        responses=responses(401, 403, 404, 409),
    )
    async def delete_task(task_id: TaskId, services: ServicesDep, who: Operator) -> Response:
        """Delete a task, its per-target states and its logs (not its audit entries). 409
        while any target is in an active state (transferring, installing, installed,
        running, building)."""
        await services.tasks.delete(task_id)
        await services.audit.append(who, "task.delete", task_id)
        return Response(status_code=204)

    @router.put(
        "/{task_id}/stop",
        status_code=202,
        response_model=StopPublic,
        responses=responses(401, 403, 404),
    )
    @router.post(  # the same: people type either (docs/api.md)
        "/{task_id}/stop",
        status_code=202,
        response_model=StopPublic,
        responses=responses(401, 403, 404),
        operation_id=f"stop_{noun}_post",
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

    @router.post(
        "/{task_id}/retry",
        response_model=TaskPublic,
        responses=responses(401, 403, 404, 409, 429),
        operation_id=f"retry_{noun}",
    )
    async def retry_task(
        task_id: TaskId, services: ServicesDep, who: Operator, body: RetryCreate | None = None
    ) -> dict[str, Any]:
        """Announce the task again, as a new attempt with the same signed manifest, to the
        given targets (body ``{"targets": [...]}``) or to every target that ended
        ``declined``, ``install_failed`` or ``expired``: after the cause (a
        missing trust anchor, a full disk) is fixed. 404 for an unknown task or target; 409
        for a target in another state, a stopped task or one past its deadline; 429 when
        too fast."""
        services.tasks.action_limit.check(who, "retry")
        targets = None if body is None else body.targets
        return task_json(await services.tasks.retry(task_id, who, targets), with_targets=True)

    _rollout_routes(router, noun)
    return router


@dataclasses.dataclass(frozen=True, slots=True)
class _RolloutAction:
    """One operator action on a staged rollout: its name (the path's last part and the
    audit action ``task.<name>``), what it does (the route's description) and the call."""

    name: str
    doc: str
    run: Callable[[Rollouts, str, Principal], Awaitable[object]]


#: ``POST /tasks/{id}/<name>``: each answers with the task document; 404 for an unknown
#: task, 409 for a task without a rollout or in the wrong state, 429 when too fast.
_ROLLOUT_ACTIONS = (
    _RolloutAction(
        "pause",
        "Pause the task's staged rollout: nothing more is announced until it is resumed "
        "(devices that have the task keep it). 409 for a task without a rollout or one that "
        "is not running.",
        Rollouts.pause,
    ),
    _RolloutAction(
        "resume",
        "Resume a paused or halted rollout: the current group's devices not announced yet "
        "are announced, and the thresholds are counted again (a halted rollout whose failed "
        "devices were not retried halts again). 409 otherwise.",
        Rollouts.resume,
    ),
    _RolloutAction(
        "abort",
        "Abort the rollout: devices not announced yet end ``stopped`` and never get the "
        "task; devices that have it keep it (stop the task to stop them). 409 for a task "
        "without a rollout or one that has ended.",
        Rollouts.abort,
    ),
)


def _rollout_route(router: APIRouter, noun: str, action: _RolloutAction) -> None:
    async def act(task_id: TaskId, services: ServicesDep, who: Operator) -> dict[str, Any]:
        services.tasks.action_limit.check(who, action.name)
        await action.run(services.tasks.rollouts, task_id, who)
        return task_json(await services.tasks.get(task_id), with_targets=True)

    router.add_api_route(
        f"/{{task_id}}/{action.name}",
        act,
        methods=["POST"],
        response_model=TaskPublic,
        responses=responses(401, 403, 404, 409, 429),
        operation_id=f"{action.name}_{noun}",
        name=f"{action.name}_{noun}",
        summary=f"{action.name.capitalize()} {noun}",
        description=action.doc,
    )


def _rollout_routes(router: APIRouter, noun: str) -> None:
    """``pause``, ``resume`` and ``abort`` of a staged rollout (docs/rollouts.md), and the
    rollback of a release."""
    for action in _ROLLOUT_ACTIONS:
        _rollout_route(router, noun, action)

    @router.post(
        "/{task_id}/rollback",
        status_code=201,
        response_model=TaskPublic,
        responses=responses(401, 403, 404, 409, 429),
        operation_id=f"rollback_{noun}",
    )
    async def rollback_task(
        task_id: TaskId, services: ServicesDep, who: Operator, body: RollbackCreate | None = None
    ) -> dict[str, Any]:
        """Roll the task's release back: deploy the previous release of its app to every
        device that got this one, as one new task (answered here, status 201) that reuses
        the previous release's artifacts and settings; an open staged rollout of this task
        is aborted. The documents link both ways (``rollbackOf``, ``rolledBackBy``). Body:
        ``{}`` or none. 409 naming the problem for a task that is not an app release, one no
        device got, or an app without an earlier release. Audited (``task.rollback``)."""
        services.tasks.action_limit.check(who, "rollback")
        new_id = await services.tasks.rollbacks.rollback(task_id, who)
        return task_json(await services.tasks.get(new_id), with_targets=True)
