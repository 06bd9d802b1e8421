"""Contract: the targets' health history, on every backend."""

from __future__ import annotations

from swarmdeploy.storage import Storage
from swarmdeploy.storage.records import HealthSample

from .helpers import add_target, target


def sample(target_id: str, at_ms: int, cpu: float = 1.0) -> HealthSample:
    return HealthSample(
        target_id, at_ms, cpu_percent=cpu, load_1m=0.5, mem_total_bytes=4 << 30,
        mem_available_bytes=1 << 30, disk_total_bytes=32 << 30, disk_free_bytes=8 << 30,
        agent_rss_bytes=25 << 20,
    )  # fmt: skip


async def test_samples_round_trip_oldest_first_since_and_newest_within_limit(
    storage: Storage,
) -> None:
    await add_target(storage, target("h1"))
    for at in (300, 100, 200, 400):
        await storage.add_health_sample(sample("h1", at, cpu=at / 10))
    got = await storage.health_samples("h1", since=150, limit=10)
    assert [s.at_ms for s in got] == [200, 300, 400]
    assert got[0] == sample("h1", 200, cpu=20.0)
    newest = await storage.health_samples("h1", since=0, limit=2)
    assert [s.at_ms for s in newest] == [300, 400]
    assert await storage.health_samples("nobody", since=0, limit=10) == []


async def test_duplicates_and_unknown_targets_are_ignored(storage: Storage) -> None:
    await add_target(storage, target("h1"))
    await storage.add_health_sample(sample("h1", 100, cpu=1.0))
    await storage.add_health_sample(sample("h1", 100, cpu=99.0))
    await storage.add_health_sample(sample("ghost", 100))
    (only,) = await storage.health_samples("h1", since=0, limit=10)
    assert only.cpu_percent == 1.0
    assert await storage.health_samples("ghost", since=0, limit=10) == []


async def test_purge_deletes_older_samples_and_deleting_a_target_drops_its_history(
    storage: Storage,
) -> None:
    await add_target(storage, target("h1"))
    await add_target(storage, target("h2"))
    for at in (100, 200, 300):
        await storage.add_health_sample(sample("h1", at))
        await storage.add_health_sample(sample("h2", at))
    assert await storage.purge_health_samples(older_than=250) == 4
    assert [s.at_ms for s in await storage.health_samples("h1", since=0, limit=9)] == [300]
    await storage.delete_target("h2")
    assert await storage.health_samples("h2", since=0, limit=9) == []
    await add_target(storage, target("h2"), now=2000)  # the id again: a new device
    assert await storage.health_samples("h2", since=0, limit=9) == []
