"""The in-memory dispatcher: per-target FIFO, bound, readiness, discard."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.manager.dispatch import (
    CommandRequest,
    LogRequest,
    MemoryDispatcher,
    StopRequest,
)
from swarmdeploy.manager.errors import Unavailable


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
