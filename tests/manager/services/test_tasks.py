"""Task service logic on the in-memory storage: matching, expiry, stop edge cases."""

from __future__ import annotations

import pytest

from swarmdeploy.manager.dispatch import LogRequest
from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.manager.events import Event
from swarmdeploy.manager.services.auth import Principal
from tests.manager.services.conftest import World

OPERATOR = Principal(name="ops", role="operator", via="api-key", key_id="k")


def deploy(
    ids: list[str] | None = None, tags: list[str] | None = None, **extra: object
) -> dict[str, object]:
    target = {k: v for k, v in (("ids", ids), ("tags", tags)) if v}
    return {"deploy": {"install": {"commands": ["true"]}, "target": target}, **extra}


async def test_match_by_id_or_any_tag_records_how(world: World) -> None:
    await world.add_targets(["a", "b"], tags=("x",))
    await world.add_targets(["c"], tags=("y",))
    await world.add_targets(["d"])
    view = await world.tasks.create(deploy(ids=["d", "ghost"], tags=["y", "z"]), created_by="me")
    assert [r.target_id for r in view.targets] == ["c", "d"]
    assert view.record.match_ids == ("d",) and view.record.match_tags == ("y",)


async def test_thousands_of_matches_without_paging_limit(world: World) -> None:
    ids = [f"n{i:05d}" for i in range(2500)]
    await world.add_targets(ids, tags=("fleet",))
    view = await world.tasks.create(deploy(tags=["fleet"]), created_by="me")
    assert len(view.targets) == 2500


async def test_expired_pending_rows_become_expired_and_are_published(world: World) -> None:
    await world.add_targets(["a", "b"])
    sub = world.events.subscribe(["taskUpdated"])
    view = await world.tasks.create(deploy(ids=["a", "b"], expiresIn=60), created_by="me")
    await world.storage.set_task_target_state(view.record.id, "b", state="running", updated_at=1)
    assert await world.tasks.expire() == 0
    world.clock.now += 60_001
    assert await world.tasks.expire() == 1
    event = await sub.get()
    assert isinstance(event, Event)
    assert (event.payload["id"], event.payload["state"]) == ("a", "expired")
    states = {r.target_id: r.state for r in (await world.tasks.get(view.record.id)).targets}
    assert states == {"a": "expired", "b": "running"}


async def test_stop_reports_targets_whose_queue_is_full(world: World) -> None:
    await world.add_targets(["a", "b"])
    view = await world.tasks.create(deploy(ids=["a", "b"]), created_by="me")
    for target in ("a", "b"):
        await world.storage.set_task_target_state(view.record.id, target, state="running",
                                                  updated_at=1)  # fmt: skip
    await world.dispatcher.submit("b", LogRequest(0))  # b's queue (size 1) is now full
    outcome = await world.tasks.stop(view.record.id, OPERATOR)
    assert (outcome.stopped, outcome.requested, outcome.refused) == (0, 1, ["b"])


async def test_stop_skips_final_rows(world: World) -> None:
    await world.add_targets(["a"])
    view = await world.tasks.create(deploy(ids=["a"]), created_by="me")
    await world.storage.set_task_target_state(view.record.id, "a", state="exited", updated_at=1)
    outcome = await world.tasks.stop(view.record.id, OPERATOR)
    assert (outcome.stopped, outcome.requested, outcome.refused) == (0, 0, [])
    assert (await world.tasks.get(view.record.id)).record.stopped_at == world.clock.now


async def test_status_follows_rows(world: World) -> None:
    await world.add_targets(["a", "b"])
    view = await world.tasks.create(deploy(ids=["a", "b"]), created_by="me")
    task_id = view.record.id
    await world.storage.set_task_target_state(task_id, "a", state="running", updated_at=1)
    await world.storage.set_task_target_state(task_id, "b", state="running", updated_at=1)
    assert (await world.tasks.get(task_id)).status.value == "running"
    await world.storage.set_task_target_state(task_id, "b", state="failed", updated_at=2)
    await world.storage.set_task_target_state(task_id, "a", state="exited", updated_at=2)
    assert (await world.tasks.get(task_id)).status.value == "failed"


async def test_descriptor_error_keeps_protocol_code(world: World) -> None:
    with pytest.raises(InvalidInput) as info:
        await world.tasks.create({"deploy": {"run": {"commands": [""]}}}, created_by="me")
    assert info.value.code == "invalid_descriptor"
