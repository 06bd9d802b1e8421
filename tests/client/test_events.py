"""``swarmdeploy.client.events``: /events in process, authenticated and filtered by the route."""

from __future__ import annotations

import asyncio

import pytest

from swarmdeploy.client import ApiError
from swarmdeploy.client.events import subscribe
from tests.agent.helpers import eventually
from tests.manager.conftest import ADMIN_KEY, Api


async def test_frames_of_the_subscribed_topics_arrive_in_process(api: Api) -> None:
    assert (await api.register("ev-1", tags=["ev"])).status_code == 201
    async with subscribe(api.app, ADMIN_KEY, {"topics": "taskAdded,targetUpdated"}) as frames:
        await api.client.put("/targets/ev-1", json={"name": "renamed"})
        doc = {"deploy": {"run": {"commands": ["./a"]}, "target": {"ids": ["ev-1"]}}}
        task = (await api.client.post("/tasks", json=doc)).json()["id"]
        seen = []
        async with asyncio.timeout(10):
            async for frame in frames:
                seen.append(frame["topic"])
                if frame["topic"] == "taskAdded":
                    assert frame["payload"]["id"] == task
                    break
        assert seen == ["targetUpdated", "taskAdded"]


async def test_a_bad_key_is_refused_with_the_routes_status(api: Api) -> None:
    with pytest.raises(ApiError) as refused:
        async with subscribe(api.app, "sdk_wrong"):
            pass
    assert refused.value.status == 401


async def test_an_unknown_topic_is_refused_naming_it(api: Api) -> None:
    with pytest.raises(ApiError) as refused:
        async with subscribe(api.app, ADMIN_KEY, {"topics": "gossip"}):
            pass
    assert refused.value.status == 422 and "gossip" in refused.value.message


async def test_leaving_the_context_ends_the_subscription(api: Api) -> None:
    async with subscribe(api.app, ADMIN_KEY, {"topics": "logs"}):
        assert api.services.events.subscriber_count == 1
    await eventually(lambda: api.services.events.subscriber_count == 0)
