"""The map (seed figure 12): devices with a location as markers coloured by the outcome of
their newest task (green ok, red failed, blue on its way, grey none), clustered by zoom; click
a marker or draw a rectangle/polygon to select devices for a bulk edit; the newest deployments
as a timeline below the map (seed §4.4).

Without a tile server (``--map-tiles``; air-gapped sites, tests) the vendored country outlines
give the markers context. **Indoor maps**: an uploaded floor plan (``/floorplans``) replaces the
world; devices placed on it (``indoor`` of the target) are drawn, clustered and selected the
same way, and an operator places a device with a click (``swarmdeploy.gui.indoor``)."""

from __future__ import annotations

import html
import math
import time
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui import MOUNT_PATH
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.geo import Cluster, Point, cluster, inside, pixels, world_outlines
from swarmdeploy.gui.indoor import plan_bounds, points_on_plan, to_plan
from swarmdeploy.gui.live import Debounced, follow
from swarmdeploy.gui.pages.bulk import edit_dialog
from swarmdeploy.gui.pages.devices import fetch_targets
from swarmdeploy.gui.pages.layout import (
    DEPLOYMENTS,
    FLOORPLAN_IMAGE,
    MAP,
    NEW_DEPLOYMENT,
    open_page,
)
from swarmdeploy.gui.rows import ago, outcome, printable
from swarmdeploy.gui.session import Session

COLOURS = {"ok": "#16a34a", "failed": "#dc2626", "active": "#2563eb", "stopped": "#6b7280",
           "none": "#9ca3af"}  # fmt: skip
OUTLINE_STYLE = {"color": "#64748b", "weight": 1, "fillColor": "#e2e8f0", "fillOpacity": 1}
TIMELINE_TASKS = 10


def points_of(targets: list[dict[str, Any]]) -> list[Point]:
    """The devices that have a location, with the outcome of their newest task."""
    points = []
    for target in targets:
        location = target.get("location")
        if location:
            recent = target.get("recentTasks") or []
            state = recent[0]["state"] if recent else None
            points.append(Point(target["id"], location["lat"], location["lon"], outcome(state)))
    return points


def _radius(c: Cluster) -> float:
    return 7 + 3 * math.log2(len(c.keys))


DRAW_TOOLS = {"draw": {"rectangle": True, "polygon": True, "marker": False, "circle": False,
                        "circlemarker": False, "polyline": False},
              "edit": False}  # fmt: skip


class MapView:
    """One open map page: the map, its selection panel and timeline, and what they show."""

    def __init__(self, ctx: GuiContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session
        self.api_key = session.api_key
        self.targets: dict[str, dict[str, Any]] = {}
        self.points: list[Point] = []
        self.clusters: list[Cluster] = []
        self.layers: list[Any] = []
        self.selected: set[str] = set()
        self.plans: dict[str, dict[str, Any]] = {}
        self.plan: dict[str, Any] | None = None
        self.place_id: Any = None  # the "place device" input (operators only)
        with ui.row().classes("items-end gap-4"):
            self.plan_select = ui.select({"": "World"}, value="", label="Map").props(
                'data-testid="map-plan"'
            )
            self.plan_select.classes("w-64")
            self.plan_select.on_value_change(lambda e: self.show_plan(str(e.value or "")))
            if session.operator.allows("operator"):
                self.place_id = ui.input("Place device (id) with a click").props(
                    'clearable data-testid="map-place"'
                )
                self.plan_name = ui.input("New floor plan name").props('data-testid="plan-name"')
                ui.upload(
                    label="Floor plan (PNG or JPEG)",
                    auto_upload=True,
                    max_file_size=8 << 20,
                    on_upload=self.upload_plan,
                ).props('accept=".png,.jpg,.jpeg" flat bordered data-testid="plan-upload"').classes(
                    "w-64"
                )
        with ui.row().classes("w-full no-wrap"):
            self.map = ui.leaflet(
                center=(30.0, 10.0), zoom=2, draw_control=DRAW_TOOLS, hide_drawn_items=True
            )
            self.map.classes("h-[62vh] grow").props('data-testid="map"')
            with ui.column().classes("w-80"):
                self.summary = ui.label("").props('data-testid="map-summary"')
                self.chosen = ui.label("Nothing selected").props('data-testid="map-selection"')
                self.listing = ui.label("").classes("text-xs text-gray-600")
                with ui.row():
                    ui.button("Clear", on_click=lambda: self.select(set())).props("flat")
                    if session.operator.allows("operator"):
                        ui.button("Edit selection…", on_click=self.edit).props(
                            'data-testid="map-edit"'
                        )
                        ui.button("Deploy to selection…", on_click=self.deploy).props(
                            'data-testid="map-deploy"'
                        )
        self._background()
        ui.label("Latest deployments").classes("text-md font-bold mt-4")
        self.timeline = ui.column().classes("w-full").props('data-testid="map-timeline"')
        self.map.on("init", self.frame_fleet)
        self.map.on("map-click", self.clicked)
        self.map.on("draw:created", self.drawn)
        self.map.on("map-zoomend", lambda _: self.redraw())

    def _background(self) -> None:
        self.map.clear_layers()  # NiceGUI's default OpenStreetMap layer: unreachable air-gapped
        self.layers = []
        if self.plan is not None:
            url = f"{MOUNT_PATH}{FLOORPLAN_IMAGE}/{self.plan['id']}"
            self.map.image_overlay(url=url, bounds=plan_bounds(self.plan))
            return
        options = self.ctx.options
        if options.map_tiles:
            self.map.tile_layer(
                url_template=options.map_tiles,
                options={"attribution": html.escape(options.map_attribution)},
            )
        else:
            self.map.generic_layer(
                name="geoJSON", args=[world_outlines(), {"style": OUTLINE_STYLE}]
            )

    async def load(self) -> None:
        """Fetch the devices and the newest deployments, then draw."""
        try:
            async with self.ctx.client(self.api_key) as api:
                targets = await fetch_targets(api)
                tasks = await api.request(
                    "GET", "/tasks", params={"sortOrder": "desc", "perPage": TIMELINE_TASKS}
                )
        except ApiError as exc:
            ui.notify(f"Cannot load the map: {printable(exc.message)}", type="negative")
            return
        self.targets = {t["id"]: t for t in targets}
        if self.plan is not None:
            self.points = points_on_plan(targets, self.plan)
            where = f"are on {printable(self.plan['name'])}"
        else:
            self.points = points_of(targets)
            where = "have a location"
        self.summary.text = f"{len(self.points)} of {len(targets)} devices {where}"
        _timeline(self.timeline, tasks["items"])
        self.select(self.selected & set(self.targets))

    def redraw(self) -> None:
        """Cluster for the current zoom and draw one marker per cluster."""
        for layer in self.layers:
            self.map.remove_layer(layer)
        self.clusters = cluster(self.points, int(self.map.zoom))
        self.layers = []
        for c in self.clusters:
            picked = bool(self.selected.intersection(c.keys))
            options = {
                "radius": _radius(c),
                "color": "#111827" if picked else "#ffffff",
                "weight": 3 if picked else 1,
                "fillColor": COLOURS.get(c.outcome, COLOURS["none"]),
                "fillOpacity": 0.9,
            }
            self.layers.append(
                self.map.generic_layer(name="circleMarker", args=[[c.lat, c.lon], options])
            )

    def select(self, keys: set[str]) -> None:
        """Make ``keys`` the selection and show it."""
        self.selected = keys
        ids = sorted(keys)
        self.chosen.text = f"{len(ids)} selected" if ids else "Nothing selected"
        shown = ", ".join(printable(k) for k in ids[:15])
        self.listing.text = shown + (f" … and {len(ids) - 15} more" if len(ids) > 15 else "")
        self.redraw()

    async def clicked(self, event: Any) -> None:
        """A click places the device named in "Place device" on the shown floor plan, or
        selects the cluster under it (or clears the selection)."""
        point = event.args.get("latlng") or {}
        placing = self.place_id
        if "lat" in point and self.plan is not None and placing is not None and placing.value:
            x, y = to_plan(self.plan, point["lat"], point["lng"])
            body = {"indoor": {"plan": self.plan["id"], "x": x, "y": y}}
            try:
                async with self.ctx.client(self.api_key) as api:
                    await api.request("PUT", f"/targets/{placing.value.strip()}", json=body)
            except ApiError as exc:
                ui.notify(f"Not placed: {printable(str(exc))}", type="negative")
                return
            placing.value = ""
            await self.load()
            return
        if "lat" in point:
            hit = _nearest(self.clusters, point["lat"], point["lng"], int(self.map.zoom))
            self.select(set(hit.keys) if hit else set())

    def drawn(self, event: Any) -> None:
        """A drawn rectangle or polygon selects the devices inside it."""
        rings = event.args.get("layer", {}).get("_latlngs") or []
        ring = rings[0] if rings and isinstance(rings[0], list) else rings
        polygon = [(p["lat"], p["lng"]) for p in ring]
        if len(polygon) >= 3:
            self.select({p.key for p in self.points if inside(p.lat, p.lon, polygon)})

    def frame_fleet(self) -> None:
        """Start framed on the devices that have a location (the whole world if none), or
        on the whole floor plan."""
        if self.plan is not None:
            self.map.run_map_method(
                "fitBounds", plan_bounds(self.plan), {"padding": [10, 10], "animate": False}
            )
        elif self.points:
            lats = [p.lat for p in self.points]
            lons = [p.lon for p in self.points]
            bounds = [[min(lats), min(lons)], [max(lats), max(lons)]]
            self.map.run_map_method(
                "fitBounds", bounds, {"padding": [60, 60], "maxZoom": 12, "animate": False}
            )

    async def load_plans(self) -> None:
        """The floor plans for the map selector."""
        try:
            async with self.ctx.client(self.api_key) as api:
                answer = await api.request("GET", "/floorplans")
        except ApiError as exc:
            ui.notify(f"Cannot list floor plans: {printable(exc.message)}", type="negative")
            return
        self.plans = {p["id"]: p for p in answer["items"]}
        self.plan_select.set_options(
            {"": "World", **{k: printable(p["name"]) for k, p in self.plans.items()}},
            value=self.plan_select.value if self.plan_select.value in self.plans else "",
        )

    async def show_plan(self, plan_id: str) -> None:
        """Switch between the world and a floor plan."""
        self.plan = self.plans.get(plan_id)
        self.selected = set()
        self._background()
        await self.load()
        self.frame_fleet()

    async def upload_plan(self, event: Any) -> None:
        """Store an uploaded floor plan (``POST /floorplans``) and show it."""
        name = (self.plan_name.value or "").strip() or event.file.name
        data = await event.file.read()
        try:
            async with self.ctx.client(self.api_key) as api:
                plan = await api.request(
                    "POST", "/floorplans", params={"name": name}, content=data,
                    headers={"Content-Type": "application/octet-stream"},
                )  # fmt: skip
        except ApiError as exc:
            ui.notify(f"Floor plan refused: {printable(str(exc))}", type="negative")
            return
        self.plan_name.value = ""
        event.sender.reset()
        await self.load_plans()
        self.plan_select.value = plan["id"]

    def deploy(self) -> None:
        """Start a new deployment aimed at the selected devices (by id)."""
        if not self.selected:
            ui.notify("Select devices first.")
            return
        self.session.draft_ids = sorted(self.selected)
        ui.navigate.to(NEW_DEPLOYMENT)

    def edit(self) -> None:
        """Bulk edit of the selection."""
        chosen = [self.targets[k] for k in sorted(self.selected)]
        edit_dialog(self.ctx, self.api_key, chosen, self.load)


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/map``."""

    @ui.page(MAP)
    async def map_page() -> RedirectResponse | None:
        session = open_page(ctx, "Map")
        if not isinstance(session, Session):
            return session
        view = MapView(ctx, session)
        await view.load_plans()
        await view.load()
        refresher = Debounced(view.load, 2.0)

        async def changed(_: dict[str, Any]) -> None:
            await refresher.poke()

        topics = "targetAdded,targetUpdated,targetDeleted,taskAdded,taskUpdated"
        follow(ctx, session.api_key, {"topics": topics}, changed)
        return None


def _nearest(clusters: list[Cluster], lat: float, lon: float, zoom: int) -> Cluster | None:
    """The cluster drawn under (lat, lon) at ``zoom``, if any (within its radius + 4 px)."""
    x, y = pixels(lat, lon, zoom)
    best: tuple[float, Cluster] | None = None
    for c in clusters:
        cx, cy = pixels(c.lat, c.lon, zoom)
        distance = math.hypot(cx - x, cy - y)
        if distance <= _radius(c) + 4 and (best is None or distance < best[0]):
            best = (distance, c)
    return best[1] if best else None


def _timeline(container: Any, tasks: list[dict[str, Any]]) -> None:
    now_ms = int(time.time() * 1000)
    container.clear()
    with container, ui.timeline(side="right").classes("w-full"):
        for task in tasks:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(task.get("stateCounts", {}).items()))
            entry = ui.timeline_entry(
                counts,
                title=printable(task.get("description") or task["id"]),
                subtitle=f"{ago(task['createdAt'], now_ms)} · {task['status']}",
            )
            entry.on("click", lambda _, t=task["id"]: ui.navigate.to(f"{DEPLOYMENTS}/{t}"))
