"""``swarmdeploy targets ...``: list, show, update (one target or a selection), delete, and
requests to a device (stop, logs, one terminal command).

Bulk updates go through ``POST /targets/bulk``, whose selection is the same filter as
``GET /targets`` (``--tag``/``--search`` of ``targets list``), so ``targets list`` with the
same options shows exactly what ``targets update`` changes (``docs/cli.md`` "Tags").
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from swarmdeploy.cli.context import PageOpt, PerPageOpt, ctx_of
from swarmdeploy.cli.render import trust_label
from swarmdeploy.cli.target_view import app_rows, target_rows

targets_app = typer.Typer(help="Registered devices.", no_args_is_help=True)

TagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        metavar="TAG",
        help="Only targets with this tag; repeat for several (a target needs all).",
    ),
]
SelectOpt = Annotated[
    str | None,
    typer.Option(
        "--select",
        metavar="SELECTOR",
        help="A selector (docs/selectors.md): ids and tags (any of), +tag (all of), !tag (not).",
    ),
]


@targets_app.command("list")
def targets_list(
    ctx: typer.Context,
    tag: TagOpt = None,
    search: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Substring of id or name.")
    ] = None,
    select: SelectOpt = None,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """List targets, sorted by id.

    Example: `swarmdeploy targets list --select 'camera,+outdoor,!lab' -o json`
    """
    c = ctx_of(ctx)
    params = {"tags": ",".join(tag) if tag else None, "search": search, "select": select}
    doc = c.client.request("GET", "/targets", params={**params, "page": page, "perPage": per_page})
    if not c.out.as_json:
        for item in doc.get("items", []):
            item["trust"] = trust_label(item)
    c.out.listing(doc, ["id", "name", "tags", "online", "transport", "trust", "lastSeenAt"])


@targets_app.command("show")
def targets_show(
    ctx: typer.Context, target_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Show one target: system, agent, trust, transport, health, its newest tasks and its
    apps (desired and running release, behind and why). `-o json` prints the target
    document only (its apps: `swarmdeploy apps device ID -o json`).

    Example: `swarmdeploy targets show pi-01`
    """
    c = ctx_of(ctx)
    doc = c.client.request("GET", f"/targets/{target_id}")
    if c.out.as_json:
        c.out.document(doc)
        return
    c.out.pairs(target_rows(doc))
    recent = doc.get("recentTasks") or []
    if recent:
        c.out.listing(
            {"items": recent, "total": len(recent), "page": 1, "perPage": len(recent)},
            ["task", "role", "state", "reason", "updatedAt"],
        )
    apps = c.client.request("GET", f"/targets/{target_id}/apps").get("items") or []
    if apps:
        c.out.line("apps:")
        c.out.listing(app_rows(apps), ["app", "desired", "running", "behind", "why"])


def _location(value: str) -> dict[str, float]:
    try:
        lat, lon = (float(part) for part in value.split(","))
    except ValueError:
        raise typer.BadParameter(
            "use LAT,LON in decimal degrees", param_hint="--location"
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise typer.BadParameter(
            "latitude within -90..90, longitude within -180..180", param_hint="--location"
        )
    return {"lat": lat, "lon": lon}


def _tag_list(value: str | None, option: str) -> list[str] | None:
    """Comma-separated tags; an empty list is refused (it would silently wipe tags)."""
    if value is None:
        return None
    tags = [t.strip() for t in value.split(",") if t.strip()]
    if not tags:
        raise typer.BadParameter(
            "no tag given; to remove every tag use --clear-tags", param_hint=option
        )
    return tags


TagsOpt = Annotated[str | None, typer.Option(metavar="A,B", help="Comma-separated tags.")]


@targets_app.command("update")
def targets_update(
    ctx: typer.Context,
    target_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="One target (else a selection).")
    ] = None,
    tag: TagOpt = None,
    ids: Annotated[
        str | None, typer.Option(metavar="ID,ID", help="Select these target ids.")
    ] = None,
    all_matching: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="Select every target whose id or name contains TEXT."),
    ] = None,
    select: SelectOpt = None,
    add_tags: Annotated[str | None, typer.Option(metavar="A,B", help="Tags to add.")] = None,
    remove_tags: Annotated[str | None, typer.Option(metavar="A,B", help="Tags to remove.")] = None,
    set_tags: Annotated[
        str | None, typer.Option("--set-tags", "--tags", metavar="A,B", help="Replace the tags.")
    ] = None,
    clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Remove every tag.")] = False,
    location: Annotated[
        str | None, typer.Option(metavar="LAT,LON", help="Decimal degrees.")
    ] = None,
    clear_location: Annotated[
        bool, typer.Option("--clear-location", help="Remove the location.")
    ] = False,
    name: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Display name (one target only).")
    ] = None,
) -> None:
    """Change tags, location or name of one target or of a selection (other fields stay).

    A selection is `--ids`, or `--tag`, `--all-matching` and/or `--select` (the filter of
    `targets list`: every `--tag` needed, TEXT a substring of id or name, SELECTOR as in
    docs/selectors.md). `--tags ""` is refused: use `--clear-tags` to remove every tag,
    `--clear-location` to remove the location.

    Example: `swarmdeploy targets update --tag lab --add-tags canary --remove-tags stable`
    """
    changes = _changes(add_tags, remove_tags, set_tags, clear_tags, location, clear_location)
    selection = _selection(target_id, tag, ids, all_matching, select)
    if not changes and name is None:
        raise typer.BadParameter(
            "give at least one of --add-tags, --remove-tags, --set-tags, --clear-tags, "
            "--location, --clear-location, --name"
        )
    c = ctx_of(ctx)
    if target_id is not None and not {"addTags", "removeTags"} & changes.keys():
        if len(selection["ids"]) > 1:
            raise typer.BadParameter("give the target as ID or in --ids, not both")
        body = _put_body(changes, name)
        c.out.document(c.client.request("PUT", f"/targets/{target_id}", json=body))
        return
    if name is not None:
        raise typer.BadParameter("--name changes one target: give its ID and no --add/--remove")
    doc = c.client.request("POST", "/targets/bulk", json={"selection": selection, **changes})
    if c.out.as_json:
        c.out.document(doc)
        return
    c.out.message(
        f"{doc['matched']} target(s) selected, {doc['changed']} changed: "
        + (", ".join(doc["ids"]) or "-")
    )


def _changes(
    add_tags: str | None,
    remove_tags: str | None,
    set_tags: str | None,
    clear_tags: bool,
    location: str | None,
    clear_location: bool = False,
) -> dict[str, Any]:
    """The change fields of ``POST /targets/bulk`` from the options."""
    changes: dict[str, Any] = {}
    for key, value, option in (
        ("addTags", add_tags, "--add-tags"),
        ("removeTags", remove_tags, "--remove-tags"),
        ("setTags", set_tags, "--set-tags"),
    ):
        tags = _tag_list(value, option)
        if tags is not None:
            changes[key] = tags
    if clear_tags:
        if "setTags" in changes:
            raise typer.BadParameter("give --clear-tags or --set-tags, not both")
        changes["setTags"] = []
    if "setTags" in changes and {"addTags", "removeTags"} & changes.keys():
        raise typer.BadParameter("--set-tags replaces the tags: no --add-tags/--remove-tags")
    if location is not None:
        if clear_location:
            raise typer.BadParameter("give --location or --clear-location, not both")
        changes["location"] = _location(location)
    if clear_location:
        changes["clearLocation"] = True
    return changes


def _selection(
    target_id: str | None,
    tag: list[str] | None,
    ids: str | None,
    search: str | None,
    select: str | None = None,
) -> dict[str, Any]:
    """The ``selection`` of ``POST /targets/bulk``: ids, or the list filter."""
    chosen = [target_id] if target_id is not None else []
    if ids is not None:
        chosen += [i.strip() for i in ids.split(",") if i.strip()]
        if not chosen:
            raise typer.BadParameter("no target id given", param_hint="--ids")
    filtered = tag or search is not None or select is not None
    if chosen and filtered:
        raise typer.BadParameter("select by ID/--ids or by --tag/--all-matching/--select, not both")
    if chosen:
        return {"ids": chosen}
    if not filtered:
        raise typer.BadParameter("select targets: an ID, --ids, --tag, --all-matching or --select")
    for value, option in ((search, "--all-matching"), (select, "--select")):
        if value is not None and not value.strip():
            raise typer.BadParameter("empty, it would select every target", param_hint=option)
    return {"tags": ",".join(tag or []) or None, "search": search, "select": select}


def _put_body(changes: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The body of ``PUT /targets/{id}``: replacements of one target (its document back)."""
    body: dict[str, Any] = {}
    if "setTags" in changes:
        body["tags"] = changes["setTags"]
    if "location" in changes:
        body["location"] = changes["location"]
    if changes.get("clearLocation"):
        body["location"] = None
    if name is not None:
        body["name"] = name
    return body


IdArg = Annotated[str, typer.Argument(metavar="ID", help="Target id.")]


@targets_app.command("delete")
def targets_delete(ctx: typer.Context, target_id: IdArg) -> None:
    """Delete (revoke) a target: its key is dropped and its connection refused.

    Example: `swarmdeploy targets delete pi-01`
    """
    c = ctx_of(ctx)
    c.client.request("DELETE", f"/targets/{target_id}")
    c.out.message(f"deleted {target_id}")


def _async_request(ctx: typer.Context, method: str, path: str, body: Any = None) -> None:
    c = ctx_of(ctx)
    doc = c.client.request(method, path, json=body)
    if c.out.as_json:
        c.out.document(doc)
    else:
        c.out.message(str((doc or {}).get("message", "ok")))


@targets_app.command("stop")
def targets_stop(ctx: typer.Context, target_id: IdArg) -> None:
    """Stop everything the target runs for its deployments.

    Example: `swarmdeploy targets stop pi-01`
    """
    _async_request(ctx, "PUT", f"/targets/{target_id}/stop")


@targets_app.command("logs")
def targets_logs(ctx: typer.Context, target_id: IdArg) -> None:
    """Ask the target to send its buffered logs.

    Example: `swarmdeploy targets logs pi-01`
    """
    _async_request(ctx, "PUT", f"/targets/{target_id}/logs")


@targets_app.command("command")
def targets_command(
    ctx: typer.Context,
    target_id: IdArg,
    command: Annotated[str, typer.Argument(metavar="COMMAND", help="Shell command line.")],
) -> None:
    """Send one terminal command (signed with your operator key); output goes to logs.

    The output arrives on /events and in `logs`; `swarmdeploy terminal ID` shows it as it
    comes.

    Example: `swarmdeploy targets command pi-01 "df -h"`
    """
    _async_request(ctx, "PUT", f"/targets/{target_id}/command", {"command": command})


@targets_app.command("command-stop")
def targets_command_stop(ctx: typer.Context, target_id: IdArg) -> None:
    """Kill the running terminal command of the target.

    Example: `swarmdeploy targets command-stop pi-01`
    """
    _async_request(ctx, "DELETE", f"/targets/{target_id}/command")
