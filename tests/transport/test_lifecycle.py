"""Lifecycle rules shared by both transports: misuse raises, close wakes the consumer."""

from __future__ import annotations

import asyncio

import pytest
from tests.transport.harness import Harness

from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import Heartbeat, Hello, Welcome
from swarmdeploy.transport.base import Lifecycle, LinkEvent, LinkState, ManagerTransport
from swarmdeploy.transport.errors import (
    TransportClosed,
    TransportConfigError,
    TransportStateError,
)


def _lifecycle(obj: ManagerTransport) -> Lifecycle:
    return obj.lifecycle  # a call: mypy must not keep the narrowing from the first assert


async def test_manager_refuses_calls_in_the_wrong_state(harness: Harness) -> None:
    manager = harness.manager
    assert manager.lifecycle is Lifecycle.OPEN
    with pytest.raises(TransportStateError):
        await manager.start()
    await manager.close()
    await manager.close()  # idempotent
    assert _lifecycle(manager) is Lifecycle.CLOSED
    for call in (manager.recv(timeout_s=0), manager.send("a", Welcome())):
        with pytest.raises(TransportClosed):
            await call


async def test_close_wakes_a_pending_manager_recv(harness: Harness) -> None:
    pending = asyncio.create_task(harness.manager.recv())
    await asyncio.sleep(0.05)
    await harness.manager.close()
    with pytest.raises(TransportClosed):
        await pending


async def test_agent_refuses_calls_in_the_wrong_state(harness: Harness) -> None:
    agent = await harness.agent("dev-1")
    with pytest.raises(TransportStateError):
        await agent.connect()
    await agent.close()
    await agent.close()
    assert agent.state is LinkState.CLOSED
    with pytest.raises(TransportClosed):
        await agent.send(Heartbeat())
    while True:  # queued events stay readable, then the closed transport says so
        try:
            item = await agent.recv(timeout_s=0)
        except TransportClosed:
            break
        assert isinstance(item, LinkEvent)


async def test_close_wakes_a_pending_agent_recv_with_a_closed_event(harness: Harness) -> None:
    agent = await harness.agent("dev-1")
    await agent.wait_state(LinkState.CONNECTED, timeout_s=5)
    while await agent.recv(timeout_s=0.05) is not None:
        pass
    pending = asyncio.create_task(agent.recv())
    await asyncio.sleep(0.05)
    await agent.close()
    assert await pending == LinkEvent(LinkState.CLOSED)


async def test_messages_going_the_wrong_way_are_refused_before_sending(harness: Harness) -> None:
    agent = await harness.agent("dev-1")
    with pytest.raises(MessageError) as info:
        await agent.send(Welcome())
    assert info.value.code == "wrong_direction"
    with pytest.raises(MessageError):
        await harness.manager.send("dev-1", Hello())


async def test_allow_validates_ids_and_keys(harness: Harness) -> None:
    with pytest.raises(TransportConfigError):
        await harness.manager.allow("bad id", generate_keypair().public)
    with pytest.raises(TransportConfigError):
        await harness.manager.allow("dev-1", "not a key")
    key = generate_keypair().public
    await harness.manager.allow("dev-1", key)
    await harness.manager.allow("dev-1", key)  # idempotent
    with pytest.raises(TransportConfigError):
        await harness.manager.allow("dev-2", key)  # one key, one target
    await harness.manager.revoke("unknown")  # idempotent
    assert harness.manager.is_allowed("dev-1") and not harness.manager.is_allowed("dev-2")
