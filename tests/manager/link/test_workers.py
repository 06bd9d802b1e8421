"""Per-target serial workers: order within a target, concurrency across targets, bounds."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.manager.link.workers import TargetWorkers


async def test_jobs_of_one_target_run_in_order_targets_concurrently() -> None:
    workers = TargetWorkers(max_queued=10)
    done: list[str] = []
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()
        done.append("a1")

    async def record(name: str) -> None:
        done.append(name)

    workers.submit("a", slow)
    workers.submit("a", lambda: record("a2"))
    workers.submit("b", lambda: record("b1"))
    await asyncio.sleep(0.01)
    assert done == ["b1"]  # b is not held up by a's slow job
    gate.set()
    await workers.wait_idle(1.0)
    assert done == ["b1", "a1", "a2"]


async def test_failing_job_is_logged_and_the_queue_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = TargetWorkers(max_queued=10)
    done: list[int] = []

    async def boom() -> None:
        raise RuntimeError("boom")

    async def ok() -> None:
        done.append(1)

    workers.submit("a", boom)
    workers.submit("a", ok)
    await workers.wait_idle(1.0)
    assert done == [1] and "link job for a failed" in caplog.text


async def test_full_queue_and_closed_workers_refuse() -> None:
    workers = TargetWorkers(max_queued=1)
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    assert workers.submit("a", wait)
    await asyncio.sleep(0)  # the first job runs; the queue is empty again
    assert workers.submit("a", wait)
    assert not workers.submit("a", wait)
    await workers.close()
    assert not workers.submit("b", wait)
