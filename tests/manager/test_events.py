"""The event hub: filtering, bounded queues that drop the oldest, drop notices, closing."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.manager.events import Dropped, Event, EventHub, SubscriptionClosed


async def test_subscription_gets_only_its_topics_and_ids() -> None:
    hub = EventHub(queue_size=100)
    sub = hub.subscribe(["logs"], target="a", task="t1")
    hub.publish("logs", 1, target="b", task="t1")
    hub.publish("logs", 2, target="a", task="t2")
    hub.publish("targetAdded", 3, target="a")
    hub.publish("logs", 4, target="a", task="t1")
    assert await sub.get() == Event("logs", 4, target="a", task="t1")
    assert sub.queued == 0


async def test_unfiltered_subscription_gets_everything_in_order() -> None:
    hub = EventHub(queue_size=100)
    sub = hub.subscribe()
    for i, topic in enumerate(["logs", "taskAdded", "targetDeleted"]):
        hub.publish(topic, i)
    assert [(await sub.get()).message()["payload"] for _ in range(3)] == [0, 1, 2]


async def test_full_queue_drops_oldest_and_reports_count_first() -> None:
    drops: list[int] = []
    hub = EventHub(queue_size=3, on_drop=drops.append)
    sub = hub.subscribe(["logs"])
    for i in range(10):
        hub.publish("logs", i)
    first = await sub.get()
    assert first == Dropped(7) and first.message() == {"topic": "dropped", "payload": {"count": 7}}
    assert [(await sub.get()).message()["payload"] for _ in range(3)] == [7, 8, 9]
    assert sum(drops) == 7


async def test_slow_subscriber_does_not_affect_a_fast_one() -> None:
    hub = EventHub(queue_size=5)
    slow = hub.subscribe(["logs"])
    fast = hub.subscribe(["logs"])
    received: list[object] = []
    for i in range(1000):
        hub.publish("logs", i)
        item = await fast.get()
        assert isinstance(item, Event)
        received.append(item.payload)
    assert received == list(range(1000))
    assert slow.queued == 5


async def test_get_waits_for_an_event() -> None:
    hub = EventHub(queue_size=5)
    sub = hub.subscribe(["logs"])
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish("logs", "x")
    async with asyncio.timeout(5):
        assert await waiter == Event("logs", "x")


async def test_close_wakes_waiting_reader() -> None:
    hub = EventHub(queue_size=5)
    sub = hub.subscribe(["logs"])
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    hub.close()
    async with asyncio.timeout(5):
        with pytest.raises(SubscriptionClosed):
            await waiter
    assert hub.subscriber_count == 0
    with pytest.raises(SubscriptionClosed):
        hub.subscribe(["logs"])


def test_unknown_topics_are_refused() -> None:
    hub = EventHub(queue_size=5)
    with pytest.raises(ValueError, match="bogus"):
        hub.subscribe(["logs", "bogus"])
    with pytest.raises(ValueError):
        hub.publish("bogus", None)


def test_closed_subscription_is_forgotten() -> None:
    hub = EventHub(queue_size=5)
    sub = hub.subscribe()
    sub.close()
    hub.publish("logs", 1)
    assert hub.subscriber_count == 0 and sub.queued == 0
