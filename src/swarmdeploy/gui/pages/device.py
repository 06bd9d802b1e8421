"""One device (``/ui/devices/{id}``): what it is and reports (health, trust, agent), edit of
name, tags and location, its apps (desired and running release), its deployment timeline, its
newest log lines and "request logs". Live from ``/events`` (filtered on the device): a
``targetUpdated`` re-reads its facts, a ``taskUpdated`` of one of its rows its timeline and
its apps."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui import logview
from swarmdeploy.gui.charts import health_chart
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.live import Debounced, follow
from swarmdeploy.gui.pages.apps import device_apps_table
from swarmdeploy.gui.pages.bulk import split_tags
from swarmdeploy.gui.pages.layout import (
    DEPLOYMENTS,
    HOME,
    open_page,
)
from swarmdeploy.gui.rows import ago, device_app_rows, outcome, printable, trust_label
from swarmdeploy.gui.session import Session

LOG_LINES = 200
HISTORY = 50
#: The live parts re-read at most this often while the device's rows change.
LIVE_REFRESH_S = 1.0
_MiB = 1 << 20


def facts(target: dict[str, Any], now_ms: int) -> list[tuple[str, str]]:
    """(label, value) pairs describing the device, from its API document."""
    health = target.get("health") or {}
    location = target.get("location")
    pairs = [
        ("Status", "online" if target.get("online") else "offline"),
        ("Last seen", ago(target.get("lastSeenAt"), now_ms)),
        ("Trust", trust_label(target)),
        ("Tags", ", ".join(printable(t) for t in target.get("tags", [])) or "—"),
        ("Location", f"{location['lat']:.5f}, {location['lon']:.5f}" if location else "—"),
        ("Registered", ago(target.get("createdAt"), now_ms)),
        ("Token set", printable(target.get("tokenSet") or "—")),
    ]
    if health:
        pairs += [
            ("CPU", f"{health.get('cpu_percent', 0):.0f} %"),
            ("Load (1 min)", f"{health.get('load_1m', 0):.2f}"),
            ("Memory free", _of(health.get("mem_available_bytes"), health.get("mem_total_bytes"))),
            ("Disk free", _of(health.get("disk_free_bytes"), health.get("disk_total_bytes"))),
            ("Agent memory", f"{(health.get('agent_rss_bytes') or 0) / _MiB:.1f} MiB"),
            ("Uptime", f"{(health.get('uptime_s') or 0) / 3600:.1f} h"),
        ]
    return pairs


def _of(free: int | None, total: int | None) -> str:
    if not total:
        return "—"
    return f"{(free or 0) / _MiB:,.0f} of {total / _MiB:,.0f} MiB"


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/devices/{target_id}``."""

    @ui.page(HOME + "/{target_id}")
    async def device(target_id: str) -> RedirectResponse | None:
        session = open_page(ctx, "Device")
        if not isinstance(session, Session):
            return session
        view = _DeviceView(ctx, session, target_id)
        target_live = Debounced(view.load_target, LIVE_REFRESH_S)
        tasks_live = Debounced(view.load_tasks, LIVE_REFRESH_S)

        async def changed(frame: dict[str, Any]) -> None:
            if frame.get("topic") in ("targetUpdated", "dropped"):
                await target_live.poke()
            if frame.get("topic") in ("taskUpdated", "dropped"):
                await tasks_live.poke()

        params = {"topics": "targetUpdated,taskUpdated", "target": target_id}
        follow(ctx, session.api_key, params, changed)
        await view.load()
        return None


class _DeviceView:
    """The elements of one open device page and the reads that fill them."""

    def __init__(self, ctx: GuiContext, session: Session, target_id: str) -> None:
        self.ctx, self.api_key, self.target_id = ctx, session.api_key, target_id
        self.doc: dict[str, Any] = {}
        self.title = ui.label("").classes("text-lg font-bold").props('data-testid="device-title"')
        with ui.row().classes("w-full"):
            with ui.card().classes("w-96"):
                self.facts = (
                    ui.grid(columns=2).classes("gap-x-4").props('data-testid="device-facts"')
                )
                if session.operator.allows("operator"):
                    self._actions()
            with ui.column().classes("grow"):
                ui.label("Deployments").classes("font-bold")
                self.history = ui.column().props('data-testid="device-history"')
        ui.label("Apps").classes("font-bold mt-4")
        self.apps = device_apps_table()
        ui.label("Health").classes("font-bold mt-4")
        self.chart = (
            ui.echart(health_chart([])).classes("w-full h-72").props('data-testid="device-health"')
        )
        self.health_note = ui.label("").classes("text-xs text-gray-600")
        self.health_note.props('data-testid="device-health-note"')
        ui.label("Newest log lines").classes("font-bold mt-4")
        self.logs = logview.log_table("device-logs")

    def _actions(self) -> None:
        with ui.row():
            ui.button(
                "Edit…",
                on_click=lambda: _edit_dialog(self.ctx, self.api_key, self.doc, self.load_target),
            ).props('data-testid="device-edit-one"')
            ui.button(
                "Terminal",
                on_click=lambda: ui.navigate.to(f"{HOME}/{self.target_id}/terminal"),
            ).props('flat data-testid="device-terminal"')
            ui.button("Request logs", on_click=self.request_logs).props(
                'flat data-testid="device-request-logs"'
            )

    def _failed(self, exc: ApiError) -> None:
        self.title.text = f"Device {printable(self.target_id)}: {printable(exc.message)}"

    async def load(self) -> None:
        """Read everything the page shows."""
        await self.load_target()
        await self.load_tasks()
        await self.load_reports()

    async def load_target(self) -> None:
        """The device's document: title and facts."""
        try:
            async with self.ctx.client(self.api_key) as api:
                target = await api.request("GET", f"/targets/{self.target_id}")
        except ApiError as exc:
            self._failed(exc)
            return
        self.doc.clear()
        self.doc.update(target)
        name = printable(target.get("name") or "")
        self.title.text = f"{name} ({printable(target['id'])})" if name else printable(target["id"])
        self.facts.clear()
        with self.facts:
            for label, value in facts(target, int(time.time() * 1000)):
                ui.label(label).classes("text-gray-600")
                ui.label(value)

    async def load_tasks(self) -> None:
        """Its deployment timeline and its apps."""
        try:
            async with self.ctx.client(self.api_key) as api:
                tasks = await api.request(
                    "GET", f"/targets/{self.target_id}/tasks", params={"perPage": HISTORY}
                )
                app_items = await api.request("GET", f"/targets/{self.target_id}/apps")
        except ApiError as exc:
            self._failed(exc)
            return
        _history(self.history, tasks["items"], int(time.time() * 1000))
        self.apps.rows = device_app_rows(app_items["items"])
        self.apps.update()

    async def load_reports(self) -> None:
        """Its newest log lines and its health history."""
        try:
            async with self.ctx.client(self.api_key) as api:
                lines = await api.request(
                    "GET",
                    "/logs",
                    params={"target": self.target_id, "sortOrder": "desc", "perPage": LOG_LINES},
                )
                health = await api.request("GET", f"/targets/{self.target_id}/health")
        except ApiError as exc:
            self._failed(exc)
            return
        logview.show(self.logs, lines["items"])
        self.chart.options.clear()
        self.chart.options.update(health_chart(health["items"]))
        self.chart.update()
        self.health_note.text = (
            f"{len(health['items'])} sample(s), one every {health['sampleIntervalS']:.0f} s"
        )

    async def request_logs(self) -> None:
        """Ask the agent for its buffered logs."""
        try:
            async with self.ctx.client(self.api_key) as api:
                answer = await api.request("PUT", f"/targets/{self.target_id}/logs")
        except ApiError as exc:
            ui.notify(f"Not requested: {printable(exc.message)}", type="negative")
            return
        ui.notify(printable(answer["message"]))


def _history(container: Any, rows: list[dict[str, Any]], now_ms: int) -> None:
    container.clear()
    with container:
        if not rows:
            ui.label("No deployments yet.")
        with ui.timeline(side="right").classes("w-full"):
            for row in rows:
                entry = ui.timeline_entry(
                    printable(row["reason"]) or "",
                    title=printable(row["description"] or row["task"]),
                    subtitle=f"{ago(row['createdAt'], now_ms)} · {row['state']}",
                    color={"ok": "green", "failed": "red", "active": "blue"}.get(
                        outcome(row["state"]), "grey"
                    ),
                )
                entry.on("click", lambda _, t=row["task"]: ui.navigate.to(f"{DEPLOYMENTS}/{t}"))


def _edit_dialog(ctx: GuiContext, api_key: str, target: dict[str, Any], done: Any) -> None:
    location = target.get("location") or {}
    with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
        ui.label(f"Edit {printable(target['id'])}").classes("text-lg font-bold")
        name = ui.input("Name", value=target.get("name") or "").props('data-testid="edit-name"')
        tags = ui.input("Tags", value=", ".join(target.get("tags", []))).props(
            'data-testid="edit-tags"'
        )
        with ui.row():
            lat = ui.number("Latitude", value=location.get("lat"), min=-90, max=90)
            lon = ui.number("Longitude", value=location.get("lon"), min=-180, max=180)

        async def save() -> None:
            body: dict[str, Any] = {"name": name.value or "", "tags": split_tags(tags.value)}
            if lat.value is not None and lon.value is not None:
                body["location"] = {"lat": lat.value, "lon": lon.value}
            elif location:
                body["location"] = None
            try:
                async with ctx.client(api_key) as api:
                    await api.request("PUT", f"/targets/{target['id']}", json=body)
            except ApiError as exc:
                ui.notify(f"Not saved: {printable(str(exc))}", type="negative")
                return
            dialog.close()
            await done()

        with ui.row():
            ui.button("Save", on_click=save).props('data-testid="edit-save"')
            ui.button("Cancel", on_click=dialog.close).props("flat")
    dialog.open()
