"""Map geometry: TopoJSON decoding, marker clustering by zoom, lasso hit test."""

from __future__ import annotations

from typing import Any

from swarmdeploy.gui.geo import Point, cluster, decode_topology, inside, world_outlines


def test_topology_arcs_are_delta_decoded_shared_and_reversed() -> None:
    topology: dict[str, Any] = {
        "transform": {"scale": [1, 1], "translate": [10, 20]},
        "arcs": [[[0, 0], [2, 0], [0, 2]], [[2, 2], [-2, 0], [0, -2]]],
        "objects": {
            "shapes": {
                "geometries": [
                    {"type": "Polygon", "arcs": [[0, 1]], "properties": {"name": "square"}},
                    {"type": "MultiPolygon", "arcs": [[[~1, ~0]]]},
                    {"type": "Point", "coordinates": [0, 0]},
                ]
            }
        },
    }
    geo = decode_topology(topology, "shapes")
    square, reverse = geo["features"]
    assert square["properties"]["name"] == "square"
    assert square["geometry"]["coordinates"] == [[[10, 20], [12, 20], [12, 22], [10, 22], [10, 20]]]
    assert reverse["geometry"]["type"] == "MultiPolygon"
    assert reverse["geometry"]["coordinates"] == [
        [[[10, 20], [10, 22], [12, 22], [12, 20], [10, 20]]]
    ]
    assert len(geo["features"]) == 2  # the point is not an outline


def test_vendored_world_has_every_country_as_closed_rings() -> None:
    world = world_outlines()
    names = {f["properties"]["name"] for f in world["features"]}
    assert len(world["features"]) > 170 and {"Italy", "Germany", "Brazil"} <= names
    italy = next(f for f in world["features"] if f["properties"]["name"] == "Italy")
    for polygon in italy["geometry"]["coordinates"]:
        assert polygon[0][0] == polygon[0][-1]
        assert all(6 < lon < 19 and 36 < lat < 48 for lon, lat in polygon[0])


def test_nearby_devices_cluster_when_zoomed_out_and_split_when_zoomed_in() -> None:
    turin = [Point(f"t{i}", 45.07 + i * 0.01, 7.68, "ok") for i in range(3)]
    bonn = [Point("b0", 50.73, 7.10, "failed"), Point("b1", 50.74, 7.11, "ok")]
    far = cluster(turin + bonn, zoom=2)
    assert len(far) == 1 and far[0].outcome == "failed" and len(far[0].keys) == 5
    near = cluster(turin + bonn, zoom=7)
    assert sorted(len(c.keys) for c in near) == [2, 3]
    assert {c.outcome for c in near} == {"failed", "ok"}
    street = cluster(turin, zoom=16)
    assert len(street) == 3


def test_lasso_polygon_selects_what_is_inside() -> None:
    box = [(45.0, 7.0), (45.0, 8.0), (46.0, 8.0), (46.0, 7.0)]
    assert inside(45.07, 7.68, box)
    assert not inside(50.73, 7.10, box)
    triangle = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)]
    assert inside(2.0, 2.0, triangle) and not inside(6.0, 6.0, triangle)
