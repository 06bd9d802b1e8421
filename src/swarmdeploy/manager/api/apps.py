"""``/apps`` and ``/targets/{id}/apps``: releases, which device runs which, which are behind
(issue 14; the logic is in ``services.apps``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import Field

from swarmdeploy.manager.api.deps import Operator, ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import ApiModel, MessagePublic
from swarmdeploy.manager.services.apps import DeviceApp, Release, device_apps_of
from swarmdeploy.protocol.descriptor import APP_NAME_PATTERN
from swarmdeploy.storage.records import TaskAppRecord

router = APIRouter(tags=["apps"])

AppName = Annotated[str, Path(pattern=APP_NAME_PATTERN, description="App name.")]
TargetId = Annotated[str, Path(max_length=128, description="Target id.")]


class ReleaseRef(ApiModel):
    """A release: the task that delivers it and its version label."""

    task_id: str
    version: str | None = None


class ReleasePublic(ReleaseRef):
    """A release of an app with how many devices it is addressed to, per state."""

    created_at: int
    standing: bool
    remove: bool
    selector: str = Field(description="The task's target selector (docs/selectors.md).")
    stopped: bool
    state_counts: dict[str, int]


class DeviceAppPublic(ApiModel):
    """One device and one app: the release it should run, the one it runs, and why not."""

    target_id: str
    app: str
    desired: ReleaseRef | None
    running: ReleaseRef | None
    behind: bool
    state: str | None = Field(description="State of the desired release on the device.")
    reason: str = ""


class AppSummary(ApiModel):
    """An app as listed."""

    name: str
    releases: int
    latest: ReleasePublic
    devices: int
    running: int
    behind: int


class AppPublic(ApiModel):
    """An app with every release (newest first) and every device it was addressed to."""

    name: str
    releases: list[ReleasePublic]
    devices: list[DeviceAppPublic]


class AppsPublic(ApiModel):
    """Every app, sorted by name (not paged: one entry per app)."""

    total: int
    items: list[AppSummary]


class TargetAppsPublic(ApiModel):
    """The apps of one device, sorted by name."""

    target_id: str
    items: list[DeviceAppPublic]


def _ref(rec: TaskAppRecord | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {"taskId": rec.task_id, "version": rec.version or None}


def release_json(release: Release) -> dict[str, Any]:
    """The public form of a release."""
    counts: dict[str, int] = {}
    for row in release.rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    rec = release.app
    return {
        **(_ref(rec) or {}),
        "createdAt": rec.created_at,
        "standing": rec.standing,
        "remove": rec.remove,
        "selector": rec.selector,
        "stopped": release.stopped,
        "stateCounts": counts,
    }


def device_app_json(item: DeviceApp) -> dict[str, Any]:
    """The public form of one device's app."""
    row = item.desired_row
    return {
        "targetId": item.target_id,
        "app": item.app,
        "desired": _ref(item.desired),
        "running": _ref(item.running),
        "behind": item.behind,
        "state": row.state if row is not None else None,
        "reason": row.reason if row is not None and item.behind else "",
    }


@router.get("/apps", response_model=AppsPublic, responses=responses(401, 403))
async def list_apps(services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """Every app with its newest release and how many devices run it or are behind."""
    items = []
    for name in await services.apps.app_names():
        releases = await services.apps.releases(name)
        devices = device_apps_of(releases)
        items.append(
            {
                "name": name,
                "releases": len(releases),
                "latest": release_json(releases[0]),
                "devices": len(devices),
                "running": sum(1 for d in devices if d.running is not None),
                "behind": sum(1 for d in devices if d.behind),
            }
        )
    return {"total": len(items), "items": items}


@router.get("/apps/{name}", response_model=AppPublic, responses=responses(401, 403, 404))
async def get_app(name: AppName, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """One app: its releases and, per device, the desired and the running release."""
    releases = await services.apps.releases(name)
    return {
        "name": name,
        "releases": [release_json(r) for r in releases],
        "devices": [device_app_json(d) for d in device_apps_of(releases)],
    }


@router.get(
    "/targets/{target_id}/apps",
    response_model=TargetAppsPublic,
    responses=responses(401, 403, 404),
)
async def target_apps(target_id: TargetId, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """The apps of one device with their desired and running release."""
    items = await services.apps.target_apps(target_id)
    return {"targetId": target_id, "items": [device_app_json(d) for d in items]}


@router.put(
    "/targets/{target_id}/apps/{name}/stop",
    status_code=202,
    response_model=MessagePublic,
    responses=responses(401, 403, 404),
)
async def stop_target_app(
    target_id: TargetId, name: AppName, services: ServicesDep, who: Operator
) -> dict[str, str]:
    """Stop one app on one device; its other apps keep running."""
    asked = await services.apps.stop_app(target_id, name)
    await services.audit.append(who, "app.stop", target_id, {"app": name, "tasks": asked})
    if not asked:
        return {"message": f"app {name} is not active on {target_id}"}
    return {"message": f"sent stop of app {name} ({', '.join(asked)}) to {target_id}"}
