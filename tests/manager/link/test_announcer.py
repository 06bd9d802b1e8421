"""Paced announcements (manager/link/announcer.py): a new task's announcements run on the
targets' workers, ``wave`` at a time, each wave after the previous one has run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest

from swarmdeploy.manager.link.announcer import Announcer, LoopLag
from swarmdeploy.manager.link.workers import TargetWorkers


async def test_announcements_run_in_waves_on_the_targets_workers() -> None:
    workers = TargetWorkers(max_queued=4)
    running: list[str] = []
    most = 0
    done: list[tuple[str, str]] = []
    all_done = asyncio.Event()

    async def announce(task_id: str, target_id: str) -> bool:
        nonlocal most
        running.append(target_id)
        most = max(most, len(running))
        await asyncio.sleep(0.01)
        running.remove(target_id)
        done.append((task_id, target_id))
        if len(done) == 5:
            all_done.set()
        return True

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

    async def announce(task_id: str, target_id: str) -> bool:
        started.set()
        await asyncio.sleep(3600)
        return True

    announcer = Announcer(workers, announce, wave=1)
    announcer.add("k", ["a", "b"])
    await asyncio.wait_for(started.wait(), 10)
    await workers.close()  # the running job ends: its wave is over
    await announcer.close()
    assert announcer.pending() == 0


async def test_no_new_wave_while_too_many_targets_are_transferring() -> None:
    workers = TargetWorkers(max_queued=4)
    announced: list[str] = []
    wave_sent = asyncio.Event()

    async def announce(task_id: str, target_id: str) -> bool:
        announced.append(target_id)
        if len(announced) % 2 == 0:
            wave_sent.set()
        return True

    announcer = Announcer(workers, announce, wave=2, max_active=3, stall_s=3600)
    announcer.add("k", ["a", "b", "c", "d", "e", "f"])
    await asyncio.wait_for(wave_sent.wait(), 10)
    await workers.wait_idle(10)
    wave_sent.clear()
    assert announced == ["a", "b"] and announcer.active() == 2
    announcer.row_changed("k", "a", "accepted")  # still transferring: no room yet
    announcer.row_changed("k", "a", "installing")  # a is done: room for the next wave
    await asyncio.wait_for(wave_sent.wait(), 10)
    assert announced == ["a", "b", "c", "d"] and announcer.active() == 3
    await announcer.close()
    await workers.close()


async def test_transfers_without_progress_do_not_hold_the_queue_forever() -> None:
    workers = TargetWorkers(max_queued=4)
    everyone = asyncio.Event()
    announced: list[str] = []

    async def announce(task_id: str, target_id: str) -> bool:
        announced.append(target_id)
        if len(announced) == 3:
            everyone.set()
        return True

    announcer = Announcer(workers, announce, wave=1, max_active=1, stall_s=0.05)
    announcer.add("k", ["a", "b", "c"])  # nobody ever reports: each wave waits stall_s
    await asyncio.wait_for(everyone.wait(), 10)
    await announcer.close()
    await workers.close()


async def _never(task_id: str, target_id: str) -> bool:
    return False


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="wave"):
        Announcer(TargetWorkers(max_queued=1), _never, wave=0)
    with pytest.raises(ValueError, match="max_active"):
        Announcer(TargetWorkers(max_queued=1), _never, wave=4, max_active=2)


async def test_no_new_wave_while_the_link_is_behind() -> None:
    workers = TargetWorkers(max_queued=4)
    announced: list[str] = []
    behind = [3.0]

    async def announce(task_id: str, target_id: str) -> bool:
        announced.append(target_id)
        return True

    announcer = Announcer(
        workers, announce, wave=1, stall_s=3600, behind=lambda: behind[0], max_behind_s=0.5
    )
    announcer.add("k", ["a", "b"])
    await asyncio.sleep(0.2)
    assert announced == [] and announcer.held == 1  # 3 s behind: held back
    behind[0] = 0.1
    await asyncio.wait_for(_until(lambda: len(announced) == 2), 10)
    assert announced == ["a", "b"]
    await announcer.close()
    await workers.close()


async def test_loop_lag_probe_measures_a_blocked_loop() -> None:
    lag = LoopLag(interval_s=0.01)
    probe = asyncio.create_task(lag.run())
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # noqa: ASYNC251 - blocks the loop on purpose: the probe runs late
    await asyncio.sleep(0.05)  # the overdue probe has run
    assert lag.peak_s >= 0.15
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - the announcer offers no event per job
        await asyncio.sleep(0.01)
