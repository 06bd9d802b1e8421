"""``/metrics`` gauges from aggregate storage queries: tasks by summary status, rows by
state, targets; the document is cached for ``cache_s``."""

from __future__ import annotations

from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.stats import StatsService
from swarmdeploy.storage.records import TaskRecord, TaskTargetRecord
from tests.manager.scrape import sample
from tests.manager.services.conftest import World


def _task(task_id: str) -> TaskRecord:
    return TaskRecord(task_id, "d", False, {}, created_at=1, expires_at=10**13)


async def _add(world: World, task_id: str, *states: str) -> None:
    rows = [TaskTargetRecord(task_id, f"t{i}", s, 1) for i, s in enumerate(states)]
    await world.storage.add_task(_task(task_id), rows)


def _stats(world: World, cache_s: float = 0.0) -> StatsService:
    return StatsService(
        world.storage,
        registry=world.registry,
        metrics=Metrics(),  # its own registry: a stats service registers its gauges
        events=world.events,
        cache_s=cache_s,
    )


async def test_task_statuses_and_row_states_come_from_aggregates(world: World) -> None:
    await world.add_targets(["t0", "t1"])
    await _add(world, "k1", "running", "exited")
    await _add(world, "k2", "exited", "running")  # same set of states
    await _add(world, "k3", "failed", "exited")
    await _add(world, "k4", "pending")
    await _add(world, "k5", "installing", "running")
    text = await _stats(world).exposition()
    assert sample(text, "swarmdeploy_targets") == 2
    for status, count in (
        ("running", 2),
        ("failed", 1),
        ("pending", 1),
        ("in_progress", 1),
        ("succeeded", 0),
    ):
        assert sample(text, "swarmdeploy_tasks", status=status) == count, status
    for state, count in (("running", 3), ("exited", 3), ("stopped", 0)):
        assert sample(text, "swarmdeploy_task_targets", state=state) == count, state


async def test_gauges_are_cached_for_cache_s(world: World) -> None:
    stats = _stats(world, cache_s=60.0)
    assert sample(await stats.exposition(), "swarmdeploy_targets") == 0
    await world.add_targets(["t0"])
    assert sample(await stats.exposition(), "swarmdeploy_targets") == 0
    assert sample(await _stats(world).exposition(), "swarmdeploy_targets") == 1
