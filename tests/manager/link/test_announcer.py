"""Paced announcements (manager/link/announcer.py): a new task's announcements run on the
targets' workers, ``wave`` at a time, each wave after the previous one has run."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.manager.link.announcer import Announcer
from swarmdeploy.manager.link.workers import TargetWorkers


async def test_announcements_run_in_waves_on_the_targets_workers() -> None:
    workers = TargetWorkers(max_queued=4)
    running: list[str] = []
    most = 0
    done: list[tuple[str, str]] = []
    all_done = asyncio.Event()

    async def announce(task_id: str, target_id: str) -> None:
        nonlocal most
        running.append(target_id)
        most = max(most, len(running))
        await asyncio.sleep(0.01)
        running.remove(target_id)
        done.append((task_id, target_id))
        if len(done) == 5:
            all_done.set()

    announcer = Announcer(workers, announce, wave=2)
    targets = [f"t{i}" for i in range(5)]
    announcer.add("k", targets)
    assert announcer.pending() == 5
    await asyncio.wait_for(all_done.wait(), 10)
    assert sorted(done) == [("k", t) for t in targets]
    assert most <= 2 and announcer.waves == 3 and announcer.queued == 5
    await announcer.close()
    announcer.add("k2", ["t0"])  # closed: nothing more is announced
    assert announcer.pending() == 0
    await workers.close()


async def test_close_stops_a_running_announcer() -> None:
    workers = TargetWorkers(max_queued=4)
    started = asyncio.Event()

    async def announce(task_id: str, target_id: str) -> None:
        started.set()
        await asyncio.sleep(3600)

    announcer = Announcer(workers, announce, wave=1)
    announcer.add("k", ["a", "b"])
    await asyncio.wait_for(started.wait(), 10)
    await workers.close()  # the running job ends: its wave is over
    await announcer.close()
    assert announcer.pending() == 0


def test_a_wave_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="wave"):
        Announcer(TargetWorkers(max_queued=1), lambda t, g: asyncio.sleep(0), wave=0)
