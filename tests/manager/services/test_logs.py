"""Log service: ingestion publishes per (target, task); retention honours age and rows."""

from __future__ import annotations

from swarmdeploy.manager.events import Event
from swarmdeploy.storage.records import LogQuery, LogRecord
from tests.manager.services.conftest import World


async def test_ingest_publishes_grouped_and_counts(world: World) -> None:
    sub = world.events.subscribe(["logs"], target="a")
    lines = [
        LogRecord(1, "a", "t1", "run", "x", "one", seq=1),
        LogRecord(2, "b", "t1", "run", "x", "two", seq=1),
        LogRecord(3, "a", "t1", "run", "x", "three", seq=2),
    ]
    assert await world.logs.ingest(lines) == 3
    event = await sub.get()
    assert isinstance(event, Event)
    assert [line["output"] for line in event.payload] == ["one", "three"]
    assert world.metrics.logs_ingested == 3


async def test_retention_by_age_and_rows(world: World) -> None:
    now = world.clock.now
    lines = [LogRecord(now - age_s * 1000, "a", "t", "run", "x", f"{age_s}s old", seq=age_s)
             for age_s in (1, 2, 3, 100, 200)]  # fmt: skip
    await world.logs.ingest(lines)
    assert await world.logs.enforce_retention(max_age_s=50, max_rows=0) == 2
    assert await world.logs.enforce_retention(max_age_s=0, max_rows=2) == 1
    left = await world.logs.query(LogQuery())
    assert sorted(line.output for line in left.items) == ["1s old", "2s old"]
    assert await world.logs.enforce_retention(max_age_s=0, max_rows=0) == 0
