"""Per-target serial workers: order within a target, concurrency across targets, bounds."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.manager.link.workers import TargetWorkers, message_key
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.states import TargetState
from tests.manager.scrape import sample


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


async def test_exact_resends_waiting_in_the_queue_are_merged_into_one_job() -> None:
    workers = TargetWorkers(max_queued=10)
    gate = asyncio.Event()
    done: list[str] = []

    async def hold() -> None:
        await gate.wait()

    async def handle(name: str) -> None:
        done.append(name)

    report = m.StateReport(task_id="t", state=TargetState.RUNNING, at_ms=5)
    later = m.StateReport(task_id="t", state=TargetState.RUNNING, at_ms=6)
    assert workers.submit("a", hold)
    await asyncio.sleep(0)  # hold runs: everything below waits behind it
    for _ in range(3):  # three copies of one report while the manager is behind
        assert workers.submit("a", lambda: handle("copy"), key=message_key(report))
    assert workers.submit("a", lambda: handle("later"), key=message_key(later))
    assert workers.submit("b", lambda: handle("other target"), key=message_key(report))
    await asyncio.sleep(0.01)
    gate.set()
    await workers.wait_idle(1.0)
    assert sorted(done) == ["copy", "later", "other target"] and workers.merged == 2
    assert workers.submit("a", lambda: handle("copy"), key=message_key(report))
    await workers.wait_idle(1.0)
    assert done.count("copy") == 2  # once it ran, a new copy is handled again


async def test_queue_gauges_and_counters_without_target_labels() -> None:
    metrics = Metrics()
    workers = TargetWorkers(max_queued=2, metrics=metrics)
    gate = asyncio.Event()

    async def blocked() -> None:
        await gate.wait()

    async def done() -> None:
        return None

    assert workers.submit("t1", blocked)  # runs at once, then waits on the gate
    await asyncio.sleep(0)
    assert workers.submit("t1", done, key="k") and workers.submit("t1", done, key="k")
    assert workers.submit("t1", done)
    assert not workers.submit("t1", done)  # full
    assert workers.submit("t2", done)
    workers.observe()
    text = metrics.render().decode()
    assert sample(text, "swarmdeploy_link_queued_jobs") == 3
    assert sample(text, "swarmdeploy_link_queue_depth_max") == 2
    assert (sample(text, "swarmdeploy_link_oldest_queued_age_seconds") or -1) >= 0
    assert sample(text, "swarmdeploy_link_duplicates_merged_total") == 1
    assert sample(text, "swarmdeploy_link_jobs_refused_total") == 1
    gate.set()
    await workers.wait_idle(5)
    workers.observe()
    text = metrics.render().decode()
    assert sample(text, "swarmdeploy_link_queued_jobs") == 0
    assert sample(text, "swarmdeploy_link_oldest_queued_age_seconds") == 0


class FakeClock:
    """Monotonic seconds moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_resend_while_a_late_answer_runs_or_was_just_served_is_answered_once() -> None:
    clock = FakeClock()
    workers = TargetWorkers(max_queued=10, clock=clock, served_s=15.0, late_s=1.0)
    gate = asyncio.Event()
    done: list[str] = []
    key = message_key(m.ChunkRequest(task_id="t", sha256="ab" * 32, index=3))

    async def serve(name: str) -> bool:
        if name == "original":
            await gate.wait()
        done.append(name)
        return True

    assert workers.submit("a", lambda: serve("original"), key=key)
    await asyncio.sleep(0)  # the original runs (the manager is behind: it waits 5 s)
    clock.now += 5.0
    assert workers.submit("a", lambda: serve("copy while running"), key=key)
    gate.set()
    await workers.wait_idle(1.0)
    clock.now += 10.0  # within served_s of the answer
    assert workers.submit("a", lambda: serve("copy after"), key=key)
    await workers.wait_idle(1.0)
    assert done == ["original"] and workers.merged == 1 and workers.dropped == 1
    workers.forget_served("a")  # a hello: the agent re-sends what it lost, served again
    assert workers.submit("a", lambda: serve("copy after hello"), key=key)
    await workers.wait_idle(1.0)
    assert done == ["original", "copy after hello"]


async def test_a_resend_of_an_answer_that_was_not_late_is_served_again() -> None:
    clock = FakeClock()
    workers = TargetWorkers(max_queued=10, clock=clock, late_s=1.0)
    gate = asyncio.Event()
    done: list[str] = []
    key = message_key(m.StateReport(task_id="t", state=TargetState.RUNNING, at_ms=5))

    async def serve(name: str) -> bool:
        if name == "original":
            await gate.wait()
        done.append(name)
        return True

    assert workers.submit("a", lambda: serve("original"), key=key)
    await asyncio.sleep(0)
    assert workers.submit("a", lambda: serve("copy while running"), key=key)
    gate.set()  # answered at once: the copy may stand for a lost answer
    await workers.wait_idle(1.0)
    assert workers.submit("a", lambda: serve("copy after"), key=key)
    await workers.wait_idle(1.0)
    assert done == ["original", "copy while running", "copy after"]


async def test_nothing_is_lost_when_the_first_of_merged_copies_fails() -> None:
    clock = FakeClock()
    workers = TargetWorkers(max_queued=10, clock=clock)
    gate = asyncio.Event()
    outcomes: list[str] = []
    key = message_key(m.FetchTask(task_id="t"))

    async def hold() -> None:
        await gate.wait()

    async def fail() -> bool:
        outcomes.append("failed")  # e.g. storage unavailable: nothing was answered
        return False

    async def boom() -> bool:
        outcomes.append("raised")
        raise RuntimeError("bug")

    async def serve() -> bool:
        outcomes.append("served")
        return True

    assert workers.submit("a", hold)
    await asyncio.sleep(0)
    clock.now += 30.0  # the manager is behind: late answers drop their copies
    assert workers.submit("a", fail, key=key)
    assert workers.submit("a", boom, key=key)  # a copy waiting with it: merged
    assert workers.submit("a", serve, key=key)  # merged too (one copy is kept)
    gate.set()
    await workers.wait_idle(1.0)
    assert outcomes == ["failed", "raised"]  # the kept copy ran; it raised: not served
    assert workers.submit("a", serve, key=key)  # nothing remembered as served
    await workers.wait_idle(1.0)
    assert outcomes == ["failed", "raised", "served"]


async def test_join_tail_only_reaches_the_last_waiting_job() -> None:
    workers = TargetWorkers(max_queued=10)
    gate = asyncio.Event()
    taken: list[object] = []

    async def hold() -> None:
        await gate.wait()

    def take(job: object) -> bool:
        taken.append(job)
        return True

    assert not workers.join_tail("a", None, take)  # nothing queued
    assert workers.submit("a", hold)
    await asyncio.sleep(0)
    assert not workers.join_tail("a", None, take)  # the running job takes nothing
    assert workers.submit("a", hold)
    assert workers.join_tail("a", "k", take) and taken == [hold]
    assert workers.submit("a", hold, key="k")  # the key counts as queued: merged
    assert workers.merged == 1
    gate.set()
    await workers.wait_idle(1.0)
