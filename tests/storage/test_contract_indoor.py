"""Contract: indoor maps (floor plans and positions), on every backend."""

from __future__ import annotations

import pytest

from swarmdeploy.storage import Conflict, NotFound, Storage
from swarmdeploy.storage.records import FloorPlanRecord, IndoorPosition

from .helpers import add_target, target


def plan(plan_id: str, name: str) -> FloorPlanRecord:
    return FloorPlanRecord(plan_id, name, "image/png", 800, 600, created_at=5, image=b"\x89PNG..")


async def test_plans_round_trip_listed_without_images_by_name(storage: Storage) -> None:
    await storage.add_floorplan(plan("p2", "hall B"))
    await storage.add_floorplan(plan("p1", "hall A"))
    listed = await storage.list_floorplans()
    assert [p.name for p in listed] == ["hall A", "hall B"] and listed[0].image == b""
    assert await storage.get_floorplan("p1") == plan("p1", "hall A")
    assert await storage.get_floorplan("nope") is None
    with pytest.raises(Conflict):
        await storage.add_floorplan(plan("p3", "hall A"))


async def test_positions_replace_clear_and_go_with_their_plan_or_target(storage: Storage) -> None:
    await storage.add_floorplan(plan("p1", "hall A"))
    await storage.add_floorplan(plan("p2", "hall B"))
    await add_target(storage, target("t1"))
    await add_target(storage, target("t2"), now=2000)
    await storage.set_indoor_position("t1", IndoorPosition("t1", "p1", 10.5, 20.0))
    await storage.set_indoor_position("t1", IndoorPosition("t1", "p2", 30.0, 40.0))
    await storage.set_indoor_position("t2", IndoorPosition("t2", "p1", 1.0, 2.0))
    found = await storage.indoor_positions(["t1", "t2", "t3"])
    assert found == {
        "t1": IndoorPosition("t1", "p2", 30.0, 40.0),
        "t2": IndoorPosition("t2", "p1", 1.0, 2.0),
    }
    await storage.set_indoor_position("t2", None)
    assert await storage.indoor_positions(["t2"]) == {}
    with pytest.raises(NotFound):
        await storage.set_indoor_position("t2", IndoorPosition("t2", "ghost", 1.0, 1.0))
    with pytest.raises(NotFound):
        await storage.set_indoor_position("ghost", None)
    await storage.delete_floorplan("p2")
    assert await storage.indoor_positions(["t1"]) == {}
    await storage.set_indoor_position("t2", IndoorPosition("t2", "p1", 5.0, 5.0))
    await storage.delete_target("t2")
    assert await storage.indoor_positions(["t2"]) == {}
    with pytest.raises(NotFound):
        await storage.delete_floorplan("p2")
