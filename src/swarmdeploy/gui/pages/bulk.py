"""Bulk edit (seed figure 14): add or remove tags and set or clear the location of a selection
of devices. Tags and a new location go in **one** ``POST /targets/bulk`` naming the selected
ids (the server applies ``removeTags`` then ``addTags`` to each device's current tags, so
tags changed meanwhile by someone else are kept). The bulk route sets locations but cannot
clear them: "Clear the location" is one ``PUT /targets/{id}`` per device."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nicegui import ui

from swarmdeploy.client import ApiError, AsyncManagerClient
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.rows import printable


def split_tags(text: str | None) -> list[str]:
    """``"a, b  c"`` -> ``["a", "b", "c"]`` (commas or spaces)."""
    return [t for t in (text or "").replace(",", " ").split() if t]


def bulk_body(
    ids: Sequence[str],
    add: Sequence[str],
    remove: Sequence[str],
    location: dict[str, float] | None,
) -> dict[str, Any] | None:
    """The ``POST /targets/bulk`` body for these changes, or None when there is nothing for
    it to do (no tags to add or remove and no location to set)."""
    if not (add or remove or location):
        return None
    body: dict[str, Any] = {"selection": {"ids": list(dict.fromkeys(ids))}}
    if add:
        body["addTags"] = list(add)
    if remove:
        body["removeTags"] = list(remove)
    if location:
        body["location"] = location
    return body


async def _clear_locations(api: AsyncManagerClient, ids: Sequence[str]) -> list[str]:
    """``PUT /targets/{id}`` ``{"location": null}`` for each id; the failures as text."""
    failed = []
    for target_id in ids:
        try:
            await api.request("PUT", f"/targets/{target_id}", json={"location": None})
        except ApiError as exc:
            failed.append(f"{printable(target_id)}: {printable(exc.message)}")
    return failed


def edit_dialog(
    ctx: GuiContext,
    api_key: str,
    targets: Sequence[dict[str, Any]],
    done: Callable[[], Awaitable[None]],
) -> None:
    """Open the bulk edit dialog for ``targets`` (their API documents)."""
    if not targets:
        ui.notify("Select devices first.")
        return
    ids = [str(t["id"]) for t in targets]
    with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
        ui.label(f"Edit {len(targets)} device(s)").classes("text-lg font-bold")
        add = ui.input("Add tags (comma or space separated)").props('data-testid="bulk-add"')
        remove = ui.input("Remove tags").props('data-testid="bulk-remove"')
        with ui.row():
            lat = ui.number("Latitude", min=-90, max=90).props('data-testid="bulk-lat"')
            lon = ui.number("Longitude", min=-180, max=180).props('data-testid="bulk-lon"')
        clear = ui.checkbox("Clear the location").props('data-testid="bulk-clear"')
        problem = ui.label("").classes("text-negative").props('data-testid="bulk-error"')

        async def apply() -> None:
            if (lat.value is None) != (lon.value is None):
                problem.text = "Give both latitude and longitude, or neither."
                return
            location = None
            if lat.value is not None and not clear.value:
                location = {"lat": float(lat.value), "lon": float(lon.value)}
            body = bulk_body(ids, split_tags(add.value), split_tags(remove.value), location)
            if body is None and not clear.value:
                problem.text = "Nothing to change: give tags to add or remove, or a location."
                return
            failed: list[str] = []
            updated = 0
            async with ctx.client(api_key) as api:
                if body is not None:
                    try:
                        result = await api.request("POST", "/targets/bulk", json=body)
                    except ApiError as exc:  # nothing was changed: keep the dialog open
                        problem.text = f"Not changed: {printable(exc.message)}"
                        return
                    updated = len(ids) - len(result["missing"])
                    failed += [f"{printable(i)}: not found" for i in result["missing"]]
                if clear.value:
                    failed += await _clear_locations(api, ids)
                    updated = len(ids) - len(failed)
            dialog.close()
            if failed:
                ui.notify(f"{len(failed)} not changed: {failed[0]}", type="negative")
            else:
                ui.notify(f"{updated} device(s) updated")
            await done()

        with ui.row():
            ui.button("Apply", on_click=apply).props('data-testid="bulk-apply"')
            ui.button("Cancel", on_click=dialog.close).props("flat")
    dialog.open()
