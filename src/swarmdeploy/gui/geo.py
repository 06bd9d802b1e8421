"""Geometry for the map page: country outlines from the vendored TopoJSON, and clustering of
device markers by zoom level. Pure functions, no NiceGUI."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

WORLD = Path(__file__).parent / "static" / "countries-110m.json"
#: Markers closer than this on screen (pixels) are drawn as one cluster.
CLUSTER_PX = 48
_TILE_PX = 256
_MAX_LAT = 85.05112878


@dataclasses.dataclass(frozen=True)
class Point:
    """A device on the map: its id, position and the outcome of its newest task."""

    key: str
    lat: float
    lon: float
    outcome: str  # see swarmdeploy.gui.rows.outcome


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Devices drawn as one marker: their centre, ids and the worst outcome among them."""

    lat: float
    lon: float
    keys: tuple[str, ...]
    outcome: str


#: The outcome a cluster shows: the worst of its devices'.
_SEVERITY = {"failed": 4, "active": 3, "stopped": 2, "ok": 1, "none": 0}


def decode_topology(topology: dict[str, Any], name: str) -> dict[str, Any]:
    """The object ``name`` of a quantized TopoJSON ``topology`` as a GeoJSON
    FeatureCollection (Polygon and MultiPolygon geometries, as world-atlas has)."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs: list[list[list[float]]] = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append([round(x * sx + tx, 2), round(y * sy + ty, 2)])
        arcs.append(points)

    def ring(indexes: Sequence[int]) -> list[list[float]]:
        coords: list[list[float]] = []
        for index in indexes:
            points = arcs[index] if index >= 0 else arcs[~index][::-1]
            coords.extend(points if not coords else points[1:])
        return _unwrapped(coords)

    features = []
    for geometry in topology["objects"][name]["geometries"]:
        kind = geometry.get("type")
        if kind == "Polygon":
            coordinates: Any = [ring(r) for r in geometry["arcs"]]
        elif kind == "MultiPolygon":
            coordinates = [[ring(r) for r in polygon] for polygon in geometry["arcs"]]
        else:
            continue
        features.append(
            {
                "type": "Feature",
                "properties": {"name": geometry.get("properties", {}).get("name", "")},
                "geometry": {"type": kind, "coordinates": coordinates},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _unwrapped(ring: list[list[float]]) -> list[list[float]]:
    """``ring`` with longitudes shifted by 360 where it crosses the antimeridian, so a
    country on both sides (Russia, Fiji) is drawn whole instead of as a band across the map."""
    out: list[list[float]] = []
    shift = 0.0
    for lon, lat in ring:
        if out:
            step = lon + shift - out[-1][0]
            if step > 180:
                shift -= 360
            elif step < -180:
                shift += 360
        out.append([round(lon + shift, 2), lat])
    return out


@functools.cache
def world_outlines() -> dict[str, Any]:
    """The vendored country outlines as GeoJSON (decoded once per process)."""
    return decode_topology(json.loads(WORLD.read_text()), "countries")


def pixels(lat: float, lon: float, zoom: int) -> tuple[float, float]:
    """Web Mercator pixel coordinates at ``zoom`` (as Leaflet's default CRS)."""
    size = _TILE_PX * (2**zoom)
    lat = max(-_MAX_LAT, min(_MAX_LAT, lat))
    x = (lon + 180.0) / 360.0 * size
    sin = math.sin(math.radians(lat))
    y = (0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * size
    return x, y


def cluster(points: Iterable[Point], zoom: int, cell_px: int = CLUSTER_PX) -> list[Cluster]:
    """Greedy clustering on screen at ``zoom``: each point joins the first cluster whose seed
    (its first point) lies within ``cell_px`` pixels, else it seeds a new one. A grid of
    seeds keeps this linear. Each cluster sits at its devices' mean position and shows their
    worst outcome; the result does not depend on the order ``points`` come in."""
    seeds: dict[tuple[int, int], list[tuple[float, float, list[Point]]]] = {}
    groups: list[list[Point]] = []
    for point in sorted(points, key=lambda p: p.key):
        x, y = pixels(point.lat, point.lon, zoom)
        cx, cy = int(x // cell_px), int(y // cell_px)
        home = _near_seed(seeds, cx, cy, x, y, cell_px)
        if home is None:
            home = [point]
            seeds.setdefault((cx, cy), []).append((x, y, home))
            groups.append(home)
        else:
            home.append(point)
    clusters = []
    for members in groups:
        worst = max((p.outcome for p in members), key=lambda o: _SEVERITY.get(o, 0))
        clusters.append(
            Cluster(
                lat=sum(p.lat for p in members) / len(members),
                lon=sum(p.lon for p in members) / len(members),
                keys=tuple(p.key for p in members),
                outcome=worst,
            )
        )
    return clusters


def _near_seed(
    seeds: dict[tuple[int, int], list[tuple[float, float, list[Point]]]],
    cx: int,
    cy: int,
    x: float,
    y: float,
    cell_px: int,
) -> list[Point] | None:
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for sx, sy, members in seeds.get((cx + dx, cy + dy), ()):
                if math.hypot(sx - x, sy - y) <= cell_px:
                    return members
    return None


def inside(lat: float, lon: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Whether (lat, lon) lies inside ``polygon`` (``[(lat, lon), ...]``; even-odd rule)."""
    result = False
    j = len(polygon) - 1
    for i, (lat_i, lon_i) in enumerate(polygon):
        lat_j, lon_j = polygon[j]
        if (lat_i > lat) != (lat_j > lat):
            crossing = lon_i + (lat - lat_i) * (lon_j - lon_i) / (lat_j - lat_i)
            if lon < crossing:
                result = not result
        j = i
    return result
