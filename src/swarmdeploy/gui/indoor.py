"""Indoor maps on the map page: a floor plan is drawn in a small box of the map's own
coordinates near (0, 0), :data:`DEG_PER_PX` degrees per image pixel, so markers, clusters,
clicks and lasso selection work on a plan exactly as on the world (at this size Web Mercator
does not distort it visibly). Pure functions, tested."""

from __future__ import annotations

from typing import Any

from swarmdeploy.gui.geo import Point
from swarmdeploy.gui.rows import outcome

#: Degrees per plan pixel: a 20,000 px plan spans 20 degrees.
DEG_PER_PX = 0.001


def plan_bounds(plan: dict[str, Any]) -> list[list[float]]:
    """The plan's ``[[south, west], [north, east]]`` on the map."""
    return [[0.0, 0.0], [plan["height"] * DEG_PER_PX, plan["width"] * DEG_PER_PX]]


def to_map(plan: dict[str, Any], x: float, y: float) -> tuple[float, float]:
    """Image pixel (x right, y down from the top left) -> (lat, lon) on the map."""
    return (plan["height"] - y) * DEG_PER_PX, x * DEG_PER_PX


def to_plan(plan: dict[str, Any], lat: float, lon: float) -> tuple[float, float]:
    """(lat, lon) on the map -> image pixel, rounded to a tenth of a pixel."""
    return round(lon / DEG_PER_PX, 1), round(plan["height"] - lat / DEG_PER_PX, 1)


def points_on_plan(targets: list[dict[str, Any]], plan: dict[str, Any]) -> list[Point]:
    """The devices placed on ``plan``, as map points with their newest outcome."""
    points = []
    for target in targets:
        place = target.get("indoor")
        if place and place["plan"] == plan["id"]:
            recent = target.get("recentTasks") or []
            lat, lon = to_map(plan, place["x"], place["y"])
            points.append(
                Point(target["id"], lat, lon, outcome(recent[0]["state"] if recent else None))
            )
    return points
