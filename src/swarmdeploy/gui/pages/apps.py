"""Apps (issue 14): every app with its newest release and how many devices run it or are
behind (``/ui/apps``); one app (``/ui/apps/{name}``) with its releases and, per device, the
desired and the running release, why it is behind, and a stop per device for operators
(``PUT /targets/{id}/apps/{name}/stop`` after a confirmation). Both re-read when tasks change
(``/events``). The device page shows the same per device (:func:`device_apps_table`); the
rows are built by the pure functions of ``gui.rows``."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.live import Debounced, follow
from swarmdeploy.gui.pages.layout import APPS, HOME, open_page
from swarmdeploy.gui.rows import app_row, device_app_row, printable, release_row
from swarmdeploy.gui.session import Session

#: The pages re-read at most this often while tasks change.
REFRESH_S = 2.0
TASK_TOPICS = {"topics": "taskAdded,taskUpdated,taskDeleted"}


def _col(name: str, label: str, align: str = "left") -> dict[str, Any]:
    return {"name": name, "label": label, "field": name, "align": align}


APP_COLUMNS = [
    _col("name", "App"),
    _col("latest", "Newest release"),
    _col("standing", "Standing"),
    _col("releases", "Releases", "right"),
    _col("devices", "Devices", "right"),
    _col("running", "Running", "right"),
    _col("behind", "Behind", "right"),
]
RELEASE_COLUMNS = [
    _col("release", "Release"),
    _col("created", "Created"),
    _col("standing", "Standing"),
    _col("selector", "Selector"),
    _col("status", "Status"),
    _col("states", "Devices by state"),
]
DEVICE_APP_COLUMNS = [
    _col("desired", "Desired"),
    _col("running", "Running"),
    _col("behind", "Behind"),
    _col("why", "Why"),
]
STOP_SLOT = """<q-td :props="props">
  <q-btn v-if="props.row.canStop" flat dense size="sm" color="negative" label="stop"
    :data-testid="'app-stop-' + props.row.key" @click.stop="$parent.$emit('stop', props.row.key)" />
</q-td>"""


def device_apps_table() -> Any:
    """The apps table of the device page (its rows:
    :func:`swarmdeploy.gui.rows.device_app_rows`); a click on a row opens the app."""
    table = ui.table(
        columns=[_col("app", "App"), *DEVICE_APP_COLUMNS], rows=[], row_key="key"
    ).classes("w-full")
    table.props('data-testid="device-apps"')
    table.on("rowClick", lambda e: ui.navigate.to(f"{APPS}/{quote(e.args[1]['key'], safe='')}"))
    return table


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/apps`` and ``/ui/apps/{name}``."""
    _register_list(ctx)
    _register_app(ctx)


def _register_list(ctx: GuiContext) -> None:
    @ui.page(APPS)
    async def apps() -> RedirectResponse | None:
        session = open_page(ctx, "Apps")
        if not isinstance(session, Session):
            return session
        summary = ui.label("").props('data-testid="apps-summary"')
        table = ui.table(columns=APP_COLUMNS, rows=[], row_key="key").classes("w-full")
        table.props('data-testid="apps-table"')
        table.on("rowClick", lambda e: ui.navigate.to(f"{APPS}/{e.args[1]['key']}"))

        async def load() -> None:
            try:
                async with ctx.client(session.api_key) as api:
                    answer = await api.request("GET", "/apps")
            except ApiError as exc:
                ui.notify(f"Cannot list apps: {printable(exc.message)}", type="negative")
                return
            table.rows = [app_row(a) for a in answer["items"]]
            table.update()
            behind = sum(a["behind"] for a in answer["items"])
            summary.text = f"{answer['total']} app(s); devices behind, summed over apps: {behind}"

        _live(ctx, session, load)
        await load()
        return None


def _register_app(ctx: GuiContext) -> None:
    @ui.page(APPS + "/{name}")
    async def app_page(name: str) -> RedirectResponse | None:
        session = open_page(ctx, "App")
        if not isinstance(session, Session):
            return session
        title = ui.label(printable(name)).classes("text-lg font-bold")
        title.props('data-testid="app-title"')
        ui.label("Releases (newest first)").classes("font-bold mt-2")
        releases = ui.table(columns=RELEASE_COLUMNS, rows=[], row_key="key").classes("w-full")
        releases.props('data-testid="app-releases"')
        ui.label("Devices").classes("font-bold mt-4")
        columns = [_col("target", "Device"), *DEVICE_APP_COLUMNS]
        if session.operator.allows("operator"):
            columns.append(_col("stop", ""))
        devices = ui.table(columns=columns, rows=[], row_key="key").classes("w-full")
        devices.props('data-testid="app-devices"')
        devices.on(
            "rowClick", lambda e: ui.navigate.to(f"{HOME}/{quote(e.args[1]['key'], safe='')}")
        )
        if session.operator.allows("operator"):
            devices.add_slot("body-cell-stop", STOP_SLOT)

        async def load() -> None:
            try:
                async with ctx.client(session.api_key) as api:
                    doc = await api.request("GET", f"/apps/{quote(name, safe='')}")
            except ApiError as exc:
                title.text = f"App {printable(name)}: {printable(exc.message)}"
                return
            now_ms = int(time.time() * 1000)
            releases.rows = [release_row(r, now_ms) for r in doc["releases"]]
            releases.update()
            devices.rows = [device_app_row(d, "targetId") for d in doc["devices"]]
            devices.update()

        devices.on("stop", lambda e: _confirm_stop(ctx, session.api_key, str(e.args), name, load))
        _live(ctx, session, load)
        await load()
        return None


def _live(ctx: GuiContext, session: Session, load: Any) -> None:
    refresher = Debounced(load, REFRESH_S)

    async def changed(_: dict[str, Any]) -> None:
        await refresher.poke()

    follow(ctx, session.api_key, TASK_TOPICS, changed)


def _confirm_stop(ctx: GuiContext, api_key: str, target_id: str, app: str, done: Any) -> None:
    """Stop ``app`` on ``target_id`` after a confirmation; its other apps keep running."""
    with ui.dialog() as dialog, ui.card():
        ui.label(
            f"Stop app {printable(app)} on {printable(target_id)}? Its processes are stopped; "
            "the device's other apps keep running."
        )

        async def confirmed() -> None:
            path = f"/targets/{quote(target_id, safe='')}/apps/{quote(app, safe='')}/stop"
            try:
                async with ctx.client(api_key) as api:
                    answer = await api.request("PUT", path)
            except ApiError as exc:
                dialog.close()
                ui.notify(f"Not stopped: {printable(exc.message)}", type="negative")
                return
            dialog.close()
            ui.notify(printable(answer["message"]))
            await done()

        with ui.row():
            ui.button("Stop", on_click=confirmed).props(
                'color=negative data-testid="app-stop-confirm"'
            )
            ui.button("Cancel", on_click=dialog.close).props("flat")
    dialog.open()
