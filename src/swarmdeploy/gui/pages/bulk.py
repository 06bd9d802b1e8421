"""Bulk edit (seed figure 14): add or remove tags and set or clear the location of a selection
of devices, through ``PUT /targets/{id}`` (a partial update per device; keys never change)."""

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


def new_tags(current: Sequence[str], add: Sequence[str], remove: Sequence[str]) -> list[str]:
    """``current`` without ``remove``, plus ``add``; order kept, no duplicates."""
    kept = [t for t in current if t not in set(remove)]
    return list(dict.fromkeys([*kept, *add]))


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
    with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
        ui.label(f"Edit {len(targets)} device(s)").classes("text-lg font-bold")
        add = ui.input("Add tags (comma or space separated)").props('data-testid="bulk-add"')
        remove = ui.input("Remove tags").props('data-testid="bulk-remove"')
        with ui.row():
            lat = ui.number("Latitude", min=-90, max=90).props('data-testid="bulk-lat"')
            lon = ui.number("Longitude", min=-180, max=180).props('data-testid="bulk-lon"')
        clear = ui.checkbox("Clear the location").props('data-testid="bulk-clear"')

        async def apply() -> None:
            changes_location = clear.value or (lat.value is not None and lon.value is not None)
            location = None if clear.value else {"lat": lat.value, "lon": lon.value}
            failed: list[str] = []
            async with ctx.client(api_key) as api:
                for target in targets:
                    body: dict[str, Any] = {
                        "tags": new_tags(
                            target.get("tags", []), split_tags(add.value), split_tags(remove.value)
                        )
                    }
                    if changes_location:
                        body["location"] = location
                    try:
                        await api.request("PUT", f"/targets/{target['id']}", json=body)
                    except ApiError as exc:
                        failed.append(f"{printable(target['id'])}: {printable(exc.message)}")
            dialog.close()
            if failed:
                ui.notify(f"{len(failed)} not changed: {failed[0]}", type="negative")
            else:
                ui.notify(f"{len(targets)} device(s) updated")
            await done()

        with ui.row():
            ui.button("Apply", on_click=apply).props('data-testid="bulk-apply"')
            ui.button("Cancel", on_click=dialog.close).props("flat")
    dialog.open()
