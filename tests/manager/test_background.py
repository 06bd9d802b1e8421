"""Periodic jobs run, survive failures, and stop."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.manager.background import JobState, PeriodicJob


async def test_job_runs_repeatedly_and_survives_failures() -> None:
    calls = 0
    three_runs = asyncio.Event()

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            three_runs.set()
        if calls == 1:
            raise RuntimeError("first round fails")

    job = PeriodicJob("test", 0.01, work)
    job.start()
    async with asyncio.timeout(5):
        await three_runs.wait()
    await job.stop()
    assert job.failures == 1 and job.runs >= 3
    assert job.state is JobState.STOPPED


async def test_job_starts_only_once() -> None:
    async def work() -> None:
        return None

    job = PeriodicJob("once", 10, work)
    job.start()
    with pytest.raises(RuntimeError):
        job.start()
    await job.stop()
    await job.stop()  # idempotent
    with pytest.raises(RuntimeError):
        job.start()


def test_interval_must_be_positive() -> None:
    async def work() -> None:
        return None

    with pytest.raises(ValueError):
        PeriodicJob("bad", 0, work)
