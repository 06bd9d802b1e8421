"""Manifest fetching (agent/manifests.py): ``fetch_task`` re-sent with backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from swarmdeploy.agent.manifests import ManifestFetcher
from swarmdeploy.protocol.messages import FetchTask, Message, Task
from tests.agent.fake_clock import FakeClock, no_jitter
from tests.agent.helpers import eventually


class Link:
    """Records when (on the fake clock) each ``fetch_task`` was sent."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.times: list[float] = []
        self.after: dict[int, Callable[[], None]] = {}  # run after the n-th send

    async def send(self, msg: Message) -> bool:
        assert isinstance(msg, FetchTask) and msg.task_id == "t"
        self.times.append(round(self.clock.now - 1000.0, 1))
        if len(self.times) in self.after:
            self.after[len(self.times)]()
        return True


async def test_unanswered_fetch_second_resend_waits_twice_as_long() -> None:
    clock = FakeClock(start=1000.0, step=0.1)  # each loop iteration: 0.1 s later
    link = Link(clock)
    fetcher = ManifestFetcher(link.send, 2.0, clock=clock, rng=no_jitter, poll_s=0.0005)
    job = asyncio.create_task(fetcher.fetch("t"))
    await eventually(lambda: len(link.times) >= 4)
    answer = Task(task_id="t", manifest=b"{}")
    fetcher.on_task(answer)
    assert await asyncio.wait_for(job, 5) is answer
    assert link.times[:4] == [0.1, 2.1, 6.1, 14.1]  # waits 2, 4, 8


async def test_reconnect_asks_again_at_once_with_the_base_interval() -> None:
    clock = FakeClock(start=1000.0, step=0.1)
    link = Link(clock)
    fetcher = ManifestFetcher(link.send, 2.0, clock=clock, rng=no_jitter, poll_s=0.0005)
    link.after = {3: fetcher.on_reconnect}  # reconnected right after the third send
    job = asyncio.create_task(fetcher.fetch("t"))
    await eventually(lambda: len(link.times) >= 5)
    fetcher.on_task(Task(task_id="t", manifest=b"{}"))
    await asyncio.wait_for(job, 5)
    assert link.times[:5] == [0.1, 2.1, 6.1, 6.2, 8.2]  # at once, then the base wait
