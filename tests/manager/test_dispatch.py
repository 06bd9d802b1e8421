"""The dispatcher: per-target FIFO, bound, readiness and discard while no sink is attached;
with a sink (the agent link) every submission goes there."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.manager.dispatch import (
    CommandRequest,
    LogRequest,
    MemoryDispatcher,
    StopRequest,
    TargetRequest,
)
from swarmdeploy.manager.errors import NotFoundError, Unavailable


class RecordingSink:
    """A sink written for the tests: keeps what it accepts, refuses target ``ghost``."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, TargetRequest, int]] = []
        self.discarded: list[str] = []

    async def accept(self, target_id: str, request: TargetRequest, *, max_open: int) -> None:
        if target_id == "ghost":
            raise NotFoundError("no such target")
        self.accepted.append((target_id, request, max_open))

    async def discard(self, target_id: str) -> int:
        self.discarded.append(target_id)
        return 2


async def test_drain_returns_requests_in_order_and_empties() -> None:
    d = MemoryDispatcher(max_per_target=10)
    first, second = LogRequest(5), CommandRequest("ls", "key a")
    await d.submit("t", first)
    await d.submit("t", second)
    assert await d.drain("t") == [first, second]
    assert await d.drain("t") == []


async def test_full_queue_refuses_without_dropping() -> None:
    d = MemoryDispatcher(max_per_target=2)
    await d.submit("t", StopRequest())
    await d.submit("t", StopRequest("task"))
    with pytest.raises(Unavailable):
        await d.submit("t", LogRequest(0))
    assert len(d.pending("t")) == 2
    await d.submit("other", LogRequest(0))  # other targets are not affected


async def test_ready_waits_for_a_submission() -> None:
    d = MemoryDispatcher(max_per_target=2)
    waiter = asyncio.create_task(d.ready())
    await asyncio.sleep(0)
    assert not waiter.done()
    await d.submit("b", LogRequest(0))
    await d.submit("a", LogRequest(0))
    async with asyncio.timeout(5):
        assert await waiter == ["a", "b"]


async def test_discard_drops_queued_requests() -> None:
    d = MemoryDispatcher(max_per_target=5)
    await d.submit("t", LogRequest(0))
    assert await d.discard("t") == 1
    assert d.pending("t") == []


def test_requests_have_distinct_ids() -> None:
    assert LogRequest(0).id != LogRequest(0).id


async def test_attached_sink_takes_queued_and_later_requests() -> None:
    d = MemoryDispatcher(max_per_target=3)
    early, lost = LogRequest(0), StopRequest()
    await d.submit("t", early)
    await d.submit("ghost", lost)
    sink = RecordingSink()
    await d.attach(sink)  # the refused one is logged and dropped
    later = StopRequest("task")
    await d.submit("t", later)
    assert sink.accepted == [("t", early, 3), ("t", later, 3)]
    assert d.pending("t") == [] and d.pending("ghost") == []
    with pytest.raises(NotFoundError):
        await d.submit("ghost", LogRequest(0))
    assert await d.discard("t") == 2 and sink.discarded == ["t"]


async def test_detached_dispatcher_queues_in_memory_again() -> None:
    d = MemoryDispatcher(max_per_target=3)
    sink = RecordingSink()
    await d.attach(sink)
    await d.attach(None)
    request = LogRequest(0)
    await d.submit("t", request)
    assert sink.accepted == [] and await d.drain("t") == [request]
