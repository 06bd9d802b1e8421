"""What only the in-memory fake offers: partitions for tests of agent and manager logic."""

from __future__ import annotations

import pytest
from tests.transport.harness import greet, make_harness, next_message

from swarmdeploy.protocol.messages import Heartbeat, Welcome
from swarmdeploy.transport.base import LinkState
from swarmdeploy.transport.errors import TransportConfigError
from swarmdeploy.transport.memory import (
    MemoryAgentTransport,
    MemoryManagerTransport,
    MemoryNetwork,
)


async def test_partition_keeps_the_link_down_until_healed() -> None:
    h = await make_harness("memory")
    try:
        assert h.network is not None
        agent = await h.agent("dev-1")
        await greet(h, agent, "dev-1")
        await h.network.partition("dev-1")
        assert agent.state is LinkState.CONNECTING
        assert not await agent.send(Heartbeat())
        assert not await h.manager.send("dev-1", Welcome())
        await h.network.heal("dev-1")
        assert await agent.wait_state(LinkState.CONNECTED, timeout_s=0) is LinkState.CONNECTED
        await greet(h, agent, "dev-1")
    finally:
        await h.close()


async def test_messages_in_flight_are_lost_when_the_link_is_cut() -> None:
    h = await make_harness("memory")
    try:
        assert h.network is not None
        agent = await h.agent("dev-1")
        await greet(h, agent, "dev-1")
        assert await agent.send(Heartbeat(sent_at_ms=1))
        await h.network.cut("dev-1")
        assert await h.manager.recv(timeout_s=0.1) is None
        assert await agent.send(Heartbeat(sent_at_ms=2))
        assert await h.manager.recv(timeout_s=1) == ("dev-1", Heartbeat(sent_at_ms=2))
    finally:
        await h.close()


async def test_a_restarted_manager_on_the_same_network_is_reached_again() -> None:
    h = await make_harness("memory")
    try:
        assert h.network is not None
        agent = await h.agent("dev-1")
        await greet(h, agent, "dev-1")
        with pytest.raises(TransportConfigError):
            MemoryManagerTransport(h.network)  # one manager per network
        await h.manager.close()
        assert agent.state is LinkState.CONNECTING
        h.manager = MemoryManagerTransport(h.network)
        assert isinstance(agent, MemoryAgentTransport)
        await h.manager.allow("dev-1", agent.config.keys.public)
        await h.manager.start()
        await greet(h, agent, "dev-1")
        assert await h.manager.send("dev-1", Welcome(server_time_ms=5))
        assert await next_message(agent) == Welcome(server_time_ms=5)
    finally:
        await h.close()


def test_network_starts_empty() -> None:
    network = MemoryNetwork()
    assert network.manager is None and network.agents == []
