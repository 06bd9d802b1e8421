"""One device (``/ui/devices/{id}``): what it is and reports (health, trust, agent), edit of
name, tags and location, its apps (desired and running release), its deployment timeline, its
newest log lines and "request logs"."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui import logview
from swarmdeploy.gui.charts import health_chart
from swarmdeploy.gui.context import GuiContext
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
        api_key = session.api_key
        title = ui.label("").classes("text-lg font-bold").props('data-testid="device-title"')
        with ui.row().classes("w-full"):
            with ui.card().classes("w-96"):
                fact_grid = (
                    ui.grid(columns=2).classes("gap-x-4").props('data-testid="device-facts"')
                )
                if session.operator.allows("operator"):
                    with ui.row():
                        ui.button("Edit…", on_click=lambda: edit()).props(
                            'data-testid="device-edit-one"'
                        )
                        ui.button(
                            "Terminal",
                            on_click=lambda: ui.navigate.to(f"{HOME}/{target_id}/terminal"),
                        ).props('flat data-testid="device-terminal"')
                        ui.button("Request logs", on_click=lambda: request_logs()).props(
                            'flat data-testid="device-request-logs"'
                        )
            with ui.column().classes("grow"):
                ui.label("Deployments").classes("font-bold")
                history = ui.column().props('data-testid="device-history"')
        ui.label("Apps").classes("font-bold mt-4")
        apps = device_apps_table()
        ui.label("Health").classes("font-bold mt-4")
        chart = (
            ui.echart(health_chart([])).classes("w-full h-72").props('data-testid="device-health"')
        )
        health_note = ui.label("").classes("text-xs text-gray-600")
        health_note.props('data-testid="device-health-note"')
        ui.label("Newest log lines").classes("font-bold mt-4")
        logs = logview.log_table("device-logs")
        doc: dict[str, Any] = {}

        async def load() -> None:
            try:
                async with ctx.client(api_key) as api:
                    target = await api.request("GET", f"/targets/{target_id}")
                    tasks = await api.request(
                        "GET", f"/targets/{target_id}/tasks", params={"perPage": HISTORY}
                    )
                    lines = await api.request(
                        "GET",
                        "/logs",
                        params={"target": target_id, "sortOrder": "desc", "perPage": LOG_LINES},
                    )
                    health = await api.request("GET", f"/targets/{target_id}/health")
                    app_items = await api.request("GET", f"/targets/{target_id}/apps")
            except ApiError as exc:
                title.text = f"Device {printable(target_id)}: {printable(exc.message)}"
                return
            doc.clear()
            doc.update(target)
            now_ms = int(time.time() * 1000)
            name = printable(target.get("name") or "")
            title.text = f"{name} ({printable(target['id'])})" if name else printable(target["id"])
            fact_grid.clear()
            with fact_grid:
                for label, value in facts(target, now_ms):
                    ui.label(label).classes("text-gray-600")
                    ui.label(value)
            _history(history, tasks["items"], now_ms)
            apps.rows = device_app_rows(app_items["items"])
            apps.update()
            logview.show(logs, lines["items"])
            chart.options.clear()
            chart.options.update(health_chart(health["items"]))
            chart.update()
            health_note.text = (
                f"{len(health['items'])} sample(s), one every {health['sampleIntervalS']:.0f} s"
            )

        async def request_logs() -> None:
            try:
                async with ctx.client(api_key) as api:
                    answer = await api.request("PUT", f"/targets/{target_id}/logs")
            except ApiError as exc:
                ui.notify(f"Not requested: {printable(exc.message)}", type="negative")
                return
            ui.notify(printable(answer["message"]))

        def edit() -> None:
            _edit_dialog(ctx, api_key, doc, load)

        await load()
        return None


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
