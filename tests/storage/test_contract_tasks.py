"""The storage contract for tasks and per-target task states, on every backend."""

from __future__ import annotations

import pytest

from swarmdeploy.storage import Conflict, NotFound, Storage
from swarmdeploy.storage.records import LogQuery, TaskRecord

from .helpers import line, row, task


async def test_add_task_round_trips_every_field(storage: Storage) -> None:
    full = TaskRecord(
        id="k1",
        description="Deploy the thing",
        debug=True,
        descriptor={"deploy": {"run": {"commands": ["./app"], "autoRestart": True}}, "n": [1, 2]},
        created_at=5,
        expires_at=50,
        created_by="alice",
        build_host="builder",
        source_digest="sha256:abc",
        match_ids=("a", "b"),
        match_tags=("x",),
    )
    await storage.add_task(full, [row("k1", "builder", role="build"), row("k1", "a")])
    assert await storage.get_task("k1") == full
    assert await storage.get_task("nope") is None
    got = await storage.get_task("k1")
    assert got is not None
    got.descriptor["n"].append(3)  # returned values are fresh copies
    assert await storage.get_task("k1") == full


async def test_add_task_with_taken_id_conflicts_and_keeps_first(storage: Storage) -> None:
    await storage.add_task(task("k1", description="first"), [row("k1", "a")])
    with pytest.raises(Conflict):
        await storage.add_task(task("k1", description="second"), [row("k1", "b")])
    first = await storage.get_task("k1")
    assert first is not None and first.description == "first"
    assert [r.target_id for r in await storage.task_targets("k1")] == ["a"]


async def test_list_tasks_sorted_by_creation_both_orders_with_paging(storage: Storage) -> None:
    for i, created in enumerate([30, 10, 20, 20]):
        await storage.add_task(task(f"k{i}", created_at=created), [])
    ascending = await storage.list_tasks()
    assert [t.id for t in ascending.items] == ["k1", "k2", "k3", "k0"]
    descending = await storage.list_tasks(sort_order="desc", page=1, per_page=3)
    assert (descending.total, [t.id for t in descending.items]) == (4, ["k0", "k3", "k2"])
    second = await storage.list_tasks(sort_order="desc", page=2, per_page=3)
    assert [t.id for t in second.items] == ["k1"]


async def test_list_tasks_search_needs_every_word(storage: Storage) -> None:
    await storage.add_task(task("k1", description="Update ROS nodes on drones"), [])
    await storage.add_task(task("k2", description="update firmware (drones/v2.1)"), [])
    await storage.add_task(task("k3", description="Reboot gateways"), [])
    found = await storage.list_tasks(search="update DRONES")
    assert [t.id for t in found.items] == ["k1", "k2"]
    assert [t.id for t in (await storage.list_tasks(search="drones ros")).items] == ["k1"]
    assert [t.id for t in (await storage.list_tasks(search="v2 drones")).items] == ["k2"]
    assert (await storage.list_tasks(search="update gateways")).total == 0
    assert (await storage.list_tasks(search="drone")).total == 0  # whole words only
    assert (await storage.list_tasks(search="  ,. ")).total == 3  # no words: no filter


async def test_delete_task_removes_its_rows_and_logs_only(storage: Storage) -> None:
    await storage.add_task(task("k1"), [row("k1", "a"), row("k1", "b")])
    await storage.add_task(task("k2"), [row("k2", "a")])
    await storage.add_logs(
        [line("one", task_id="k1", seq=1), line("two", task_id="k2", seq=2), line("x", task_id="")]
    )
    await storage.delete_task("k1")
    assert await storage.get_task("k1") is None
    assert await storage.task_targets("k1") == []
    assert [r.task_id for r in await storage.target_tasks("a")] == ["k2"]
    remaining = await storage.query_logs(LogQuery())
    assert sorted(log.output for log in remaining.items) == ["two", "x"]
    with pytest.raises(NotFound):
        await storage.delete_task("k1")


async def test_mark_task_stopped_sets_time(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.mark_task_stopped("k1", 1234)
    stopped = await storage.get_task("k1")
    assert stopped is not None and stopped.stopped_at == 1234
    with pytest.raises(NotFound):
        await storage.mark_task_stopped("nope", 1)


async def test_task_targets_list_build_host_first(storage: Storage) -> None:
    rows = [row("k1", "c"), row("k1", "z", role="build"), row("k1", "a")]
    await storage.add_task(task("k1"), rows)
    listed = await storage.task_targets("k1")
    assert [(r.role, r.target_id) for r in listed] == [
        ("build", "z"),
        ("deploy", "a"),
        ("deploy", "c"),
    ]
    assert await storage.task_targets("nope") == []


async def test_target_tasks_newest_first_filtered_by_state(storage: Storage) -> None:
    for i, created in enumerate([10, 30, 20]):
        await storage.add_task(task(f"k{i}", created_at=created), [row(f"k{i}", "a")])
    await storage.add_task(task("other", created_at=40), [row("other", "b")])
    await storage.set_task_target_state("k1", "a", state="running", updated_at=2)
    assert [r.task_id for r in await storage.target_tasks("a")] == ["k1", "k2", "k0"]
    pending = await storage.target_tasks("a", states=["pending"])
    assert [r.task_id for r in pending] == ["k2", "k0"]
    assert await storage.target_tasks("a", states=[]) == []


async def test_recent_task_rows_newest_per_target_in_one_answer(storage: Storage) -> None:
    for i, created in enumerate([10, 30, 20, 40]):
        targets = [row(f"k{i}", "a")] + ([row(f"k{i}", "b")] if i == 3 else [])
        await storage.add_task(task(f"k{i}", created_at=created), targets)
    await storage.set_task_target_state("k1", "a", state="failed", updated_at=9, reason="exit 1")
    recent = await storage.recent_task_rows(["a", "b", "nobody"], per_target=2)
    assert set(recent) == {"a", "b"}
    assert [r.task_id for r in recent["a"]] == ["k3", "k1"]
    assert (recent["a"][1].state, recent["a"][1].reason) == ("failed", "exit 1")
    assert [r.task_id for r in recent["b"]] == ["k3"]
    assert await storage.recent_task_rows([], per_target=3) == {}
    assert [r.task_id for r in (await storage.recent_task_rows(["a"], per_target=9))["a"]] == [
        "k3",
        "k1",
        "k2",
        "k0",
    ]


async def test_set_task_target_state_compare_and_set(storage: Storage) -> None:
    await storage.add_task(task("k1"), [row("k1", "a")])
    assert await storage.set_task_target_state(
        "k1", "a", state="announced", updated_at=5, expected=["pending"]
    )
    assert not await storage.set_task_target_state(
        "k1", "a", state="accepted", updated_at=6, expected=["pending"]
    )
    assert await storage.set_task_target_state(
        "k1", "a", state="declined", updated_at=7, reason="disk full", expected=["announced"]
    )
    (current,) = await storage.task_targets("k1")
    assert (current.state, current.updated_at, current.reason) == ("declined", 7, "disk full")
    assert not await storage.set_task_target_state("k1", "ghost", state="x", updated_at=1)
    assert not await storage.set_task_target_state("nope", "a", state="x", updated_at=1)
    assert await storage.set_task_target_state("k1", "a", state="stopped", updated_at=8)


async def test_expire_pending_moves_only_expired_rows_in_states(storage: Storage) -> None:
    await storage.add_task(task("old", expires_at=100), [row("old", "a"), row("old", "b")])
    await storage.add_task(task("new", expires_at=300), [row("new", "a")])
    await storage.set_task_target_state("old", "b", state="running", updated_at=1)
    changed = await storage.expire_pending(
        now=100, states=["pending", "announced"], new_state="expired"
    )
    assert [(r.task_id, r.target_id, r.state, r.updated_at) for r in changed] == [
        ("old", "a", "expired", 100)
    ]
    states = {(r.task_id, r.target_id): r.state for r in await storage.target_tasks("a")}
    assert states == {("old", "a"): "expired", ("new", "a"): "pending"}
    assert [r.state for r in await storage.target_tasks("b")] == ["running"]
    assert await storage.expire_pending(now=100, states=["pending"], new_state="expired") == []
    assert await storage.expire_pending(now=999, states=[], new_state="expired") == []


async def test_retry_task_target_back_to_pending_with_next_attempt(storage: Storage) -> None:
    await storage.add_task(task("k1"), [row("k1", "a"), row("k1", "b")])
    await storage.set_task_target_state("k1", "a", state="declined", updated_at=5, reason="why")
    retried = await storage.retry_task_target("k1", "a", updated_at=9, expected=["declined"])
    assert retried is not None
    assert (retried.state, retried.reason, retried.attempt, retried.updated_at) == (
        "pending", "", 1, 9,
    )  # fmt: skip
    assert await storage.get_task_target("k1", "a") == retried
    # compare-and-set: "b" is pending, not declined; unknown rows change nothing
    assert await storage.retry_task_target("k1", "b", updated_at=9, expected=["declined"]) is None
    assert await storage.retry_task_target("k1", "zz", updated_at=9, expected=["pending"]) is None
    await storage.set_task_target_state("k1", "a", state="install_failed", updated_at=10)
    again = await storage.retry_task_target("k1", "a", updated_at=11, expected=["install_failed"])
    assert again is not None and again.attempt == 2
    b = await storage.get_task_target("k1", "b")
    assert b is not None and b.attempt == 0
