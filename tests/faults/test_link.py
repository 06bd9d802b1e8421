"""Link faults on real CurveZMQ sockets (issue #10 item 7, docs/reliability.md).

When the manager dies, the agent's socket loop can see readiness without a message
(``zmq.Again``) or fail otherwise; the link must survive the first, and every restart of
its sockets must surface as a new ``connected`` event -- the daemon sends ``hello`` on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import zmq
import zmq.asyncio

from swarmdeploy.protocol.messages import Welcome
from swarmdeploy.transport.base import AgentLinkConfig, LinkState
from swarmdeploy.transport.zmq import ZmqAgentTransport
from tests.transport.harness import TIMEOUT_S, Harness, greet, make_harness, next_event


class FlakyAgent(ZmqAgentTransport):
    """Raises ``fail`` once, on the next message from the manager (fault injection)."""

    fail: BaseException | None = None

    async def _on_dealer(self, dealer: zmq.asyncio.Socket) -> None:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        await super()._on_dealer(dealer)


@pytest.fixture
async def zh() -> AsyncIterator[Harness]:
    h = await make_harness("zmq")
    try:
        yield h
    finally:
        await h.close()


async def _flaky(h: Harness) -> FlakyAgent:
    base = await h.agent("dev-1", allow=True)  # for its keys and ports
    config: AgentLinkConfig = base.config  # type: ignore[attr-defined]
    await base.close()
    h.agents.remove(base)
    agent = FlakyAgent(config)
    h.agents.append(agent)
    await agent.connect()
    await greet(h, agent, "dev-1")
    while (await next_event(agent)).state is not LinkState.CONNECTED:
        pass
    return agent


async def test_readiness_without_a_message_does_not_restart_the_link(zh: Harness) -> None:
    agent = await _flaky(zh)
    agent.fail = zmq.Again()
    assert await zh.manager.send("dev-1", Welcome(server_time_ms=1))
    item = await agent.recv(timeout_s=TIMEOUT_S)
    assert item == Welcome(server_time_ms=1)  # read on the next round, link untouched
    assert agent.state is LinkState.CONNECTED


async def test_a_restarted_link_is_a_new_connected_event(zh: Harness) -> None:
    agent = await _flaky(zh)
    agent.fail = RuntimeError("injected")
    assert await zh.manager.send("dev-1", Welcome(server_time_ms=1))
    lost = await next_event(agent)
    assert lost.state is LinkState.CONNECTING
    assert (await next_event(agent)).state is LinkState.CONNECTED  # the daemon says hello
