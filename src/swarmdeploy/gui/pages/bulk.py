"""Bulk edit (seed figure 14): add or remove tags and set or clear the location of a selection
of devices. Every change goes in **one** ``POST /targets/bulk`` naming the selected ids (the
server applies ``removeTags`` then ``addTags`` to each device's current tags, so tags changed
meanwhile by someone else are kept; ``clearLocation`` clears the location)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nicegui import ui

from swarmdeploy.client import ApiError
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
    *,
    clear_location: bool = False,
) -> dict[str, Any] | None:
    """The ``POST /targets/bulk`` body for these changes, or None when there is nothing for
    it to do (no tags to add or remove and no location to set or clear). A location to
    clear wins over one to set."""
    if clear_location:
        location = None
    if not (add or remove or location or clear_location):
        return None
    body: dict[str, Any] = {"selection": {"ids": list(dict.fromkeys(ids))}}
    if add:
        body["addTags"] = list(add)
    if remove:
        body["removeTags"] = list(remove)
    if location:
        body["location"] = location
    if clear_location:
        body["clearLocation"] = True
    return body


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
            if lat.value is not None:
                location = {"lat": float(lat.value), "lon": float(lon.value)}
            body = bulk_body(
                ids,
                split_tags(add.value),
                split_tags(remove.value),
                location,
                clear_location=bool(clear.value),
            )
            if body is None:
                problem.text = "Nothing to change: give tags to add or remove, or a location."
                return
            async with ctx.client(api_key) as api:
                try:
                    result = await api.request("POST", "/targets/bulk", json=body)
                except ApiError as exc:  # nothing was changed: keep the dialog open
                    problem.text = f"Not changed: {printable(exc.message)}"
                    return
            updated = len(ids) - len(result["missing"])
            failed = [f"{printable(i)}: not found" for i in result["missing"]]
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
