"""The single choke point for per-target state changes."""

from __future__ import annotations

import pytest

from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.events import Event, EventHub
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import TargetEvent, TargetState
from swarmdeploy.storage.records import (
    BatchResult,
    TargetRecord,
    TaskRecord,
    TaskTargetRecord,
    WriteBatch,
)
from swarmdeploy.storage.sqlite import ScratchSqliteStorage
from tests.manager.services.conftest import World


async def _task(world: World) -> str:
    await world.add_targets(["a"])
    doc = {"deploy": {"install": {"commands": ["true"]}, "target": {"ids": ["a"]}}}
    return (await world.tasks.create(doc, created_by="me")).record.id


async def test_allowed_event_persists_and_publishes(world: World) -> None:
    task_id = await _task(world)
    sub = world.events.subscribe(["taskUpdated"], task=task_id)
    row = await world.states.apply(task_id, "a", TargetEvent.ANNOUNCE)
    assert row is not None and row.state == "announced"
    row = await world.states.apply(task_id, "a", TargetEvent.DECLINE, reason="disk full")
    assert row is not None and (row.state, row.reason) == ("declined", "disk full")
    events = [await sub.get(), await sub.get()]
    assert all(isinstance(e, Event) for e in events)
    assert [e.message()["payload"]["state"] for e in events] == ["announced", "declined"]
    stored = await world.states.row(task_id, "a")
    assert (stored.state, stored.reason) == ("declined", "disk full")


async def test_illegal_event_raises_and_changes_nothing(world: World) -> None:
    task_id = await _task(world)
    with pytest.raises(TransitionError):
        await world.states.apply(task_id, "a", TargetEvent.RUN)
    assert (await world.states.row(task_id, "a")).state == "pending"


async def test_unknown_row_is_not_found(world: World) -> None:
    task_id = await _task(world)
    with pytest.raises(NotFoundError):
        await world.states.apply(task_id, "ghost", TargetEvent.ANNOUNCE)


class RacingStorage(ScratchSqliteStorage):
    """When armed, another writer moves the row to ``announced`` just before each write."""

    armed = False

    async def commit_batch(self, batch: WriteBatch) -> BatchResult:
        if self.armed:
            self.armed = False
            for write in batch.states:
                await self.set_task_target_state(
                    write.task_id, write.target_id, state="announced", updated_at=1
                )
        return await super().commit_batch(batch)


async def test_concurrent_change_returns_none() -> None:
    storage = RacingStorage()
    await storage.open()
    await storage.create_token_set("s", [b"h" * 32], created_at=0, expires_at=10**15)
    target = TargetRecord(id="a", curve_key="k", identity_key="i", created_at=0, updated_at=0)
    await storage.register_target(b"h" * 32, target, now=1)
    await storage.add_task(
        TaskRecord(id="t", description="", debug=False, descriptor={}, created_at=0,
                   expires_at=10**15),
        [TaskTargetRecord("t", "a", "pending", 0)],
    )  # fmt: skip
    states = TaskStates(storage, events=EventHub(queue_size=10), clock=lambda: 5)
    storage.armed = True
    assert await states.apply("t", "a", TargetEvent.ACCEPT) is None
    assert (await states.row("t", "a")).state == "announced"
    await storage.close()


async def test_report_jumps_over_lost_reports_and_repeats_are_ok(world: World) -> None:
    task_id = await _task(world)
    await world.states.apply(task_id, "a", TargetEvent.ANNOUNCE)
    await world.states.apply(task_id, "a", TargetEvent.ACCEPT)
    report = await world.states.report(task_id, "a", TargetState.RUNNING)
    assert report.ok and report.row.state == "running"
    again = await world.states.report(task_id, "a", TargetState.RUNNING)
    assert again.ok and again.row.state == "running"


async def test_report_that_cannot_be_reached_is_refused_with_current(world: World) -> None:
    task_id = await _task(world)
    await world.states.apply(task_id, "a", TargetEvent.STOP)
    report = await world.states.report(task_id, "a", TargetState.RUNNING, reason="late")
    assert not report.ok and report.row.state == "stopped"


class CountingStorage(ScratchSqliteStorage):
    """Counts reads of single rows."""

    reads = 0

    async def get_task_target(self, task_id: str, target_id: str) -> TaskTargetRecord | None:
        self.reads += 1
        return await super().get_task_target(task_id, target_id)


async def _counting() -> tuple[CountingStorage, TaskStates]:
    storage = CountingStorage()
    await storage.open()
    await storage.add_task(
        TaskRecord(id="t", description="", debug=False, descriptor={}, created_at=0,
                   expires_at=10**15),
        [TaskTargetRecord("t", "a", "pending", 0)],
    )  # fmt: skip
    return storage, TaskStates(storage, events=EventHub(queue_size=100), clock=lambda: 5)


async def test_a_live_row_is_read_once_then_kept_in_memory() -> None:
    storage, states = await _counting()
    await states.apply("t", "a", TargetEvent.ANNOUNCE)
    await states.apply("t", "a", TargetEvent.ACCEPT)
    for reported in (TargetState.TRANSFERRING, TargetState.INSTALLING, TargetState.INSTALLED):
        assert (await states.report("t", "a", reported)).ok
    assert (await states.row("t", "a")).state == "installed"
    assert storage.reads == 1
    stored = await storage.get_task_target("t", "a")
    assert stored is not None and stored.state == "installed"  # every change was written
    await storage.close()


async def test_a_row_changed_behind_the_cache_is_read_again() -> None:
    """Another writer (a replica) moved the row: the compare-and-set misses, the stored row
    is read and the decision is made on it."""
    storage, states = await _counting()
    seen: list[str] = []
    states.add_change_listener(lambda row: seen.append(row.state))
    await states.apply("t", "a", TargetEvent.ANNOUNCE)
    await storage.set_task_target_state("t", "a", state="accepted", updated_at=6)
    report = await states.report("t", "a", TargetState.TRANSFERRING)
    assert report.ok and report.row.state == "transferring"
    assert seen == ["announced", "transferring"]
    await storage.set_task_target_state("t", "a", state="stopped", updated_at=7)
    refused = await states.report("t", "a", TargetState.INSTALLING)
    assert not refused.ok and refused.row.state == "stopped"  # refused on the stored row
    await storage.close()
