"""Behaviour every transport shares, run against ZeroMQ (real sockets on 127.0.0.1) and the
in-memory fake (docs/protocol.md §3, §6; ADR 0002)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from tests.transport.harness import (
    TIMEOUT_S,
    Harness,
    greet,
    manager_receiving,
    next_event,
    next_message,
)

from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.protocol.messages import (
    ALL_TOPIC,
    Heartbeat,
    Hello,
    Hint,
    LogAck,
    Message,
    StateAck,
    UnknownMessage,
    Welcome,
    id_topic,
    tag_topic,
)
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import AgentTransport, LinkEvent, LinkState


async def _retry(send: Callable[[], Awaitable[bool]]) -> None:
    """Send until the link takes the message (``False`` means: not now)."""
    async with asyncio.timeout(TIMEOUT_S):
        while not await send():  # noqa: ASYNC110 -- send is non-blocking by contract
            await asyncio.sleep(0.002)


async def _hints(agent: AgentTransport, until: Callable[[Hint], bool]) -> list[Hint]:
    """Hints received up to and including the first one matching ``until``."""
    seen: list[Hint] = []
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            item = await agent.recv()
            if isinstance(item, Hint):
                seen.append(item)
                if until(item):
                    return seen


async def test_allowed_key_connects_and_messages_flow_both_ways(harness: Harness) -> None:
    agent = await harness.agent("dev-1")
    assert await next_event(agent) == LinkEvent(LinkState.CONNECTING)
    assert (await next_event(agent)).state is LinkState.CONNECTED
    await greet(harness, agent, "dev-1")
    reply = StateAck(task_id="t1", state=TargetState.RUNNING, extra={"future": 1})
    assert await harness.manager.send("dev-1", reply)
    assert await next_message(agent) == reply


async def test_unknown_key_gets_nothing_and_sees_auth_failure(harness: Harness) -> None:
    stranger = await harness.agent("stranger", allow=False)
    await stranger.wait_state(LinkState.AUTH_FAILED, timeout_s=TIMEOUT_S)
    assert not await stranger.send(Hello())
    await harness.manager.publish(ALL_TOPIC, Hint(reason="everyone"))
    assert not await harness.manager.send("stranger", Welcome())
    assert await harness.manager.recv(timeout_s=0.3) is None
    while (item := await stranger.recv(timeout_s=0.3)) is not None:
        assert isinstance(item, LinkEvent) and item.state is not LinkState.CONNECTED


async def test_allowing_a_refused_key_lets_the_agent_in(harness: Harness) -> None:
    keys = generate_keypair()
    late = await harness.agent("late", keys=keys, allow=False)
    await late.wait_state(LinkState.AUTH_FAILED, timeout_s=TIMEOUT_S)
    await harness.manager.allow("late", keys.public)
    await greet(harness, late, "late")


async def test_impersonation_is_rejected_both_ways(harness: Harness) -> None:
    real = await harness.agent("a")
    await greet(harness, real, "a")
    b_keys = generate_keypair()
    await harness.manager.allow("b", b_keys.public)
    impostor = await harness.agent("a", keys=b_keys, allow=False)  # b's key, claims "a"
    await impostor.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)  # the key is valid
    await real.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)
    assert await impostor.send(Hello(boot_id="impostor"))
    assert await harness.manager.recv(timeout_s=0.5) is None  # dropped: User-Id b != a
    assert await harness.manager.send("a", Welcome(log_acked_seq=7))
    assert await next_message(real) == Welcome(log_acked_seq=7)
    while (item := await impostor.recv(timeout_s=0.3)) is not None:
        assert isinstance(item, LinkEvent), f"the impostor received {item!r}"


async def test_revoke_drops_the_live_connection_at_once_and_reconnecting_fails(
    harness: Harness,
) -> None:
    agent = await harness.agent("dev-1")
    await greet(harness, agent, "dev-1")
    assert (await next_event(agent)).state is LinkState.CONNECTING
    assert (await next_event(agent)).state is LinkState.CONNECTED
    started = time.monotonic()
    await harness.manager.revoke("dev-1")
    assert (await next_event(agent, timeout_s=2.0)).state is LinkState.CONNECTING
    assert time.monotonic() - started < 2.0  # typically a few ms; no heartbeat timeout
    assert (await next_event(agent)).state is LinkState.AUTH_FAILED
    assert not harness.manager.is_allowed("dev-1")
    assert not await harness.manager.send("dev-1", Welcome())
    assert not await agent.send(Heartbeat())
    assert await agent.recv(timeout_s=0.5) is None  # no reconnect succeeds
    assert agent.state is LinkState.AUTH_FAILED


async def test_other_agents_reconnect_and_keep_working_after_a_revocation(
    harness: Harness,
) -> None:
    doomed = await harness.agent("doomed")
    other = await harness.agent("other")
    await greet(harness, doomed, "doomed")
    await greet(harness, other, "other")
    while (await next_event(other)).state is not LinkState.CONNECTED:
        pass
    await harness.manager.revoke("doomed")
    if harness.kind != "http":  # ZeroMQ re-binds its sockets; HTTP sessions are per agent
        assert (await next_event(other)).state is LinkState.CONNECTING
        assert (await next_event(other)).state is LinkState.CONNECTED
        await greet(harness, other, "other")  # on every new connection the agent says hello
    assert await harness.manager.send("other", Welcome(server_time_ms=1))
    assert await next_message(other) == Welcome(server_time_ms=1)
    await doomed.wait_state(LinkState.AUTH_FAILED, timeout_s=TIMEOUT_S)


async def test_thousand_messages_arrive_in_order_both_ways(harness: Harness) -> None:
    agent = await harness.agent("dev-1")
    await greet(harness, agent, "dev-1")
    count = 1000

    async def agent_sends() -> None:
        for i in range(count):
            await _retry(functools.partial(agent.send, Heartbeat(sent_at_ms=i)))

    sender = asyncio.create_task(agent_sends())
    received: list[int] = []
    while len(received) < count:
        got = await harness.manager.recv(timeout_s=TIMEOUT_S)
        assert got is not None and got[0] == "dev-1" and isinstance(got[1], Heartbeat)
        received.append(got[1].sent_at_ms)
    await sender
    assert received == list(range(count))

    async def manager_sends() -> None:
        for i in range(count):
            await _retry(functools.partial(harness.manager.send, "dev-1", LogAck(upto_seq=i)))

    sender = asyncio.create_task(manager_sends())
    acks: list[int] = []
    while len(acks) < count:
        msg = await next_message(agent)
        assert isinstance(msg, LogAck)
        acks.append(msg.upto_seq)
    await sender
    assert acks == list(range(count))


async def test_tag_hints_reach_the_subscribed_agents_only(harness: Harness) -> None:
    async with manager_receiving(harness) as received:
        await _tag_hints_reach_the_subscribed_agents_only(harness)
    assert not received  # a subscription is the transport's business: nothing came up


async def _tag_hints_reach_the_subscribed_agents_only(harness: Harness) -> None:
    red = await harness.agent("red-1", tags=["red"])
    blue = await harness.agent("blue-1", tags=["blue", "reddish"])
    for agent in (red, blue):
        await agent.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)
    got_warmup: set[str] = set()
    async with asyncio.timeout(TIMEOUT_S):  # wait until both subscriptions are live
        while len(got_warmup) < 2:
            await harness.manager.publish(ALL_TOPIC, Hint(reason="warmup"))
            for name, agent in (("red", red), ("blue", blue)):
                if isinstance(await agent.recv(timeout_s=0.02), Hint):
                    got_warmup.add(name)
    await harness.manager.publish(tag_topic("red"), Hint(reason="task", task_id="t-red"))
    await _hints(red, until=lambda h: h.task_id == "t-red")
    await harness.manager.publish(id_topic("blue-1"), Hint(reason="marker", task_id="m-blue"))
    seen = await _hints(blue, until=lambda h: h.task_id == "m-blue")
    assert "t-red" not in {h.task_id for h in seen}  # same PUB->SUB order: it would be first
    await harness.manager.publish(ALL_TOPIC, Hint(reason="end", task_id="end"))
    seen = await _hints(red, until=lambda h: h.task_id == "end")
    assert "m-blue" not in {h.task_id for h in seen}


async def test_tags_changed_at_run_time_take_effect(harness: Harness) -> None:
    agent = await harness.agent("dev-1", tags=["old"])
    await agent.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)
    await agent.set_tags(["new"])  # what a config push from the API does (§6.8)
    async with manager_receiving(harness), asyncio.timeout(TIMEOUT_S):
        while True:
            await harness.manager.publish(tag_topic("old"), Hint(task_id="old"))
            await harness.manager.publish(tag_topic("new"), Hint(task_id="new"))
            item = await agent.recv(timeout_s=0.05)
            if isinstance(item, Hint):
                assert item.task_id == "new"
                break


async def test_unknown_message_types_are_delivered_whole(harness: Harness) -> None:
    agent = await harness.agent("dev-1")
    await greet(harness, agent, "dev-1")
    future: Message = UnknownMessage(type="telemetry_v9", fields={"cpu": [1, 2]})
    assert await agent.send(future)
    assert await harness.manager.recv(timeout_s=TIMEOUT_S) == ("dev-1", future)
    assert await harness.manager.send("dev-1", future)
    assert await next_message(agent) == future


async def test_a_cut_link_reconnects_and_keeps_routing(harness: Harness) -> None:
    agent = await harness.agent("dev-1", via_proxy=True)
    await greet(harness, agent, "dev-1")
    while (await next_event(agent)).state is not LinkState.CONNECTED:
        pass
    await harness.cut("dev-1")
    assert (await next_event(agent)).state is LinkState.CONNECTING
    assert (await next_event(agent)).state is LinkState.CONNECTED
    await greet(harness, agent, "dev-1")
    await _retry(lambda: harness.manager.send("dev-1", Welcome(server_time_ms=2)))
    assert await next_message(agent) == Welcome(server_time_ms=2)
