"""Floor-plan pixels <-> map coordinates, and the devices placed on a plan."""

from __future__ import annotations

import pytest

from swarmdeploy.gui.indoor import plan_bounds, points_on_plan, to_map, to_plan

PLAN = {"id": "a" * 16, "width": 800, "height": 600}


def test_pixels_round_trip_with_y_down_from_the_top_left() -> None:
    assert to_map(PLAN, 0, 0) == pytest.approx((0.6, 0.0))  # top left is north-west
    assert to_map(PLAN, 800, 600) == pytest.approx((0.0, 0.8))
    assert to_plan(PLAN, *to_map(PLAN, 123.4, 456.7)) == (123.4, 456.7)
    south_west, north_east = plan_bounds(PLAN)
    assert south_west == [0.0, 0.0] and north_east == pytest.approx([0.6, 0.8])


def test_only_devices_on_this_plan_become_points() -> None:
    targets = [
        {"id": "a", "indoor": {"plan": PLAN["id"], "x": 100, "y": 100},
         "recentTasks": [{"state": "failed"}]},
        {"id": "b", "indoor": {"plan": "b" * 16, "x": 1, "y": 1}},
        {"id": "c", "indoor": None, "location": {"lat": 1, "lon": 1}},
    ]  # fmt: skip
    (point,) = points_on_plan(targets, PLAN)
    assert point.key == "a" and point.outcome == "failed"
    assert (point.lat, point.lon) == pytest.approx(to_map(PLAN, 100, 100))
