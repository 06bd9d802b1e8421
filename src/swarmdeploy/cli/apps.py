"""``swarmdeploy apps list|show|device``: apps, their releases and which device runs which
(issue 14; ``GET /apps``, ``GET /apps/{name}``, ``GET /targets/{id}/apps``). The group
registers itself on :data:`swarmdeploy.cli.app.app`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from swarmdeploy.cli.app import app
from swarmdeploy.cli.context import ctx_of

apps_app = typer.Typer(help="Apps: releases, desired and running per device.", no_args_is_help=True)
app.add_typer(apps_app, name="apps")


def _release(ref: Any) -> str:
    if not isinstance(ref, dict):
        return "-"
    version = ref.get("version")
    return f"{ref.get('taskId')} ({version})" if version else str(ref.get("taskId"))


def _device_rows(items: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [
        {
            "target": d["targetId"],
            "app": d["app"],
            "desired": _release(d.get("desired")),
            "running": _release(d.get("running")),
            "behind": "yes" if d.get("behind") else "",
            "why": f"{d.get('state')}: {d.get('reason')}" if d.get("behind") else "",
        }
        for d in items
    ]
    return {"total": len(rows), "items": rows, "page": 1, "perPage": len(rows)}


@apps_app.command("list")
def apps_list(ctx: typer.Context) -> None:
    """List apps with their newest release and how many devices are behind.

    Example: `swarmdeploy apps list -o json`
    """
    c = ctx_of(ctx)
    doc = c.client.request("GET", "/apps")
    if c.out.as_json:
        c.out.json(doc)
        return
    rows = [
        {**a, "latest": _release(a["latest"]), "standing": a["latest"]["standing"]}
        for a in doc["items"]
    ]
    listing = {"total": doc["total"], "items": rows, "page": 1, "perPage": doc["total"]}
    c.out.listing(
        listing, ["name", "latest", "standing", "releases", "devices", "running", "behind"]
    )


@apps_app.command("show")
def apps_show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="APP", help="App name.")]
) -> None:
    """Show one app: its releases and, per device, the desired and running release.

    Example: `swarmdeploy apps show detector`
    """
    c = ctx_of(ctx)
    doc = c.client.request("GET", f"/apps/{name}")
    if c.out.as_json:
        c.out.json(doc)
        return
    releases = [{**r, "release": _release(r), "states": r["stateCounts"]} for r in doc["releases"]]
    c.out.listing(
        {"total": len(releases), "items": releases, "page": 1, "perPage": len(releases)},
        ["release", "createdAt", "standing", "remove", "selector", "stopped", "states"],
    )
    c.out.listing(_device_rows(doc["devices"]), ["target", "desired", "running", "behind", "why"])


@apps_app.command("device")
def apps_device(
    ctx: typer.Context,
    target_id: Annotated[str, typer.Argument(metavar="ID", help="Target id.")],
) -> None:
    """Show the apps of one device with their desired and running release.

    Example: `swarmdeploy apps device pi-01`
    """
    c = ctx_of(ctx)
    doc = c.client.request("GET", f"/targets/{target_id}/apps")
    if c.out.as_json:
        c.out.json(doc)
        return
    c.out.listing(_device_rows(doc["items"]), ["app", "desired", "running", "behind", "why"])
