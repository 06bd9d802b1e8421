"""Devices: every target in one virtually scrolled table (fast with thousands of rows), a filter
over name, id and tags, online counts, and delete (= revoke) with confirmation for admins."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError, AsyncManagerClient
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.live import Debounced, follow
from swarmdeploy.gui.pages.bulk import edit_dialog
from swarmdeploy.gui.pages.layout import HOME, open_page
from swarmdeploy.gui.rows import printable, target_row
from swarmdeploy.gui.session import Session

PER_PAGE = 1000
LIVE_REFRESH_S = 2.0
MAX_ROWS = 50_000

COLUMNS: list[dict[str, Any]] = [
    {"name": "name", "label": "Name", "field": "name", "sortable": True, "align": "left"},
    {"name": "id", "label": "Id", "field": "id", "sortable": True, "align": "left"},
    {"name": "tags", "label": "Tags", "field": "tags", "align": "left"},
    {"name": "online", "label": "Status", "field": "online", "sortable": True, "align": "left"},
    {"name": "lastSeen", "label": "Last seen", "field": "lastSeen", "align": "left"},
    {"name": "trust", "label": "Trust", "field": "trust", "sortable": True, "align": "left"},
    {"name": "latest", "label": "Latest task", "field": "latest", "align": "left"},
    {"name": "history", "label": "History", "field": "history", "align": "left"},
    {"name": "location", "label": "Location", "field": "location", "align": "left"},
]

#: Coloured dots of a device's newest task outcomes (newest first); text only, never HTML.
HISTORY_SLOT = """<q-td :props="props"><span v-for="(h, i) in props.value" :key="i"
  :title="h.title" :class="'outcome-dot outcome-' + h.outcome"></span></q-td>"""
OUTCOME_CSS = """
.outcome-dot {display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:3px}
.outcome-ok {background:#16a34a} .outcome-failed {background:#dc2626}
.outcome-active {background:#2563eb} .outcome-stopped {background:#9ca3af}
.outcome-none {background:#d1d5db}
"""


async def fetch_targets(api: AsyncManagerClient) -> list[dict[str, Any]]:
    """Every target, page by page (``perPage`` 1000), up to :data:`MAX_ROWS`."""
    items: list[dict[str, Any]] = []
    page = 1
    while len(items) < MAX_ROWS:
        answer = await api.request("GET", "/targets", params={"page": page, "perPage": PER_PAGE})
        items.extend(answer["items"])
        if len(answer["items"]) < PER_PAGE or len(items) >= answer["total"]:
            break
        page += 1
    return items


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/devices``."""

    @ui.page(HOME)
    async def devices() -> RedirectResponse | None:
        session = open_page(ctx, "Devices")
        if not isinstance(session, Session):
            return session
        summary = ui.label("").props('data-testid="device-summary"')
        with ui.row().classes("w-full items-center"):
            search = ui.input("Filter by name, id or tag").props(
                'clearable data-testid="device-filter"'
            )
            refresh = ui.button("Refresh").props('flat data-testid="device-refresh"')
            edit = None
            if session.operator.allows("operator"):
                edit = ui.button("Edit selected…").props('flat data-testid="device-edit"')
            delete = None
            if session.operator.allows("admin"):
                delete = ui.button("Delete selected…").props(
                    'color=negative flat data-testid="device-delete"'
                )
        table = (
            ui.table(columns=COLUMNS, rows=[], row_key="key", selection="multiple")
            .props('virtual-scroll :rows-per-page-options="[0]" data-testid="device-table"')
            .classes("w-full h-[70vh]")
        )
        search.bind_value_to(table, "filter")
        table.on("rowClick", lambda e: ui.navigate.to(f"{HOME}/{e.args[1]['key']}"))
        table.add_slot("body-cell-history", HISTORY_SLOT)
        ui.add_css(OUTCOME_CSS)

        docs: dict[str, dict[str, Any]] = {}

        async def load() -> None:
            now_ms = int(time.time() * 1000)
            try:
                async with ctx.client(session.api_key) as api:
                    targets = await fetch_targets(api)
            except ApiError as exc:
                ui.notify(f"Cannot list devices: {printable(exc.message)}", type="negative")
                return
            docs.clear()
            docs.update((t["id"], t) for t in targets)
            table.rows = [target_row(t, now_ms) for t in targets]
            table.update()
            online = sum(1 for t in targets if t.get("online"))
            summary.text = f"{len(targets)} devices, {online} online"

        refresh.on_click(load)
        # Live: registrations, edits, revocations and online changes re-read the list (at most
        # every 2 s however many devices change at once).
        refresher = Debounced(load, LIVE_REFRESH_S)

        async def changed(_: dict[str, Any]) -> None:
            await refresher.poke()

        follow(ctx, session.api_key, {"topics": "targetAdded,targetUpdated,targetDeleted"}, changed)
        if edit is not None:
            edit.on_click(
                lambda: edit_dialog(
                    ctx, session.api_key, [docs[r["key"]] for r in table.selected], load
                )
            )
        if delete is not None:
            delete.on_click(lambda: _confirm_delete(ctx, session.api_key, table, load))
        await load()
        return None


def _confirm_delete(ctx: GuiContext, api_key: str, table: Any, reload: Any) -> None:
    chosen = [row["key"] for row in table.selected]
    if not chosen:
        ui.notify("Select devices first.")
        return
    with ui.dialog() as dialog, ui.card():
        ui.label(
            f"Delete (revoke) {len(chosen)} device(s)? Their keys are dropped and their "
            "connections closed; they must register again with a new token."
        )

        async def confirmed() -> None:
            failed = 0
            async with ctx.client(api_key) as api:
                for target_id in chosen:
                    try:
                        await api.request("DELETE", f"/targets/{target_id}")
                    except ApiError:
                        failed += 1
            dialog.close()
            if failed:
                ui.notify(f"{failed} of {len(chosen)} could not be deleted", type="negative")
            table.selected = []
            await reload()

        with ui.row():
            ui.button("Delete", on_click=confirmed).props(
                'color=negative data-testid="device-delete-confirm"'
            )
            ui.button("Cancel", on_click=dialog.close).props("flat")
    dialog.open()
