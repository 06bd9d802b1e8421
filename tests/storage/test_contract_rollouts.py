"""The storage contract for staged rollouts, on every backend."""

from __future__ import annotations

import pytest

from swarmdeploy.storage import Conflict, NotFound, Storage
from swarmdeploy.storage.records import RolloutRecord
from tests.storage.helpers import task


def rollout(task_id: str) -> RolloutRecord:
    """A rollout with every field set."""
    return RolloutRecord(
        task_id=task_id,
        groups=(("t1",), ("t2", "t3"), ()),
        state="running",
        current=0,
        updated_at=1000,
        reason="",
        soak_until=None,
    )


async def test_rollout_round_trips_and_goes_with_its_task(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.add_rollout(rollout("k1"))
    assert await storage.get_rollout("k1") == rollout("k1")
    assert await storage.get_rollout("k2") is None
    await storage.delete_task("k1")
    assert await storage.get_rollout("k1") is None
    assert await storage.list_rollouts(["running"]) == []


async def test_rollout_of_unknown_task_or_twice_is_refused(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.add_rollout(rollout("nope"))
    await storage.add_task(task("k1"), [])
    await storage.add_rollout(rollout("k1"))
    with pytest.raises(Conflict):
        await storage.add_rollout(rollout("k1"))


async def test_rollout_update_and_list_by_state(storage: Storage) -> None:
    for task_id in ("k1", "k2"):
        await storage.add_task(task(task_id), [])
        await storage.add_rollout(rollout(task_id))
    updated = await storage.update_rollout(
        "k2", state="halted", current=1, reason="3 of 10 failed", soak_until=5000, updated_at=2000
    )
    assert updated is not None
    assert (updated.state, updated.current, updated.reason) == ("halted", 1, "3 of 10 failed")
    assert (updated.soak_until, updated.updated_at) == (5000, 2000)
    assert updated.groups == rollout("k2").groups
    assert await storage.get_rollout("k2") == updated
    assert [r.task_id for r in await storage.list_rollouts(["running"])] == ["k1"]
    assert [r.task_id for r in await storage.list_rollouts(["running", "halted"])] == [
        "k1",
        "k2",
    ]
    missing = await storage.update_rollout(
        "k3", state="paused", current=0, reason="", soak_until=None, updated_at=1
    )
    assert missing is None
