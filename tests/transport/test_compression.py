"""Compression on the real CurveZMQ link (docs/protocol.md §2.1): negotiated by hello and
welcome, used both ways only after it, counted on the wire, and never assumed by a side that
was not asked."""

from __future__ import annotations

from tests.transport.harness import TIMEOUT_S, Harness, next_message

from swarmdeploy.protocol.messages import Config, Hello, LogBatch, LogEntry, Welcome
from swarmdeploy.transport.base import AgentTransport, LinkState
from swarmdeploy.transport.zmq import ZmqAgentTransport, ZmqManagerTransport

BATCH = LogBatch(
    entries=[
        LogEntry(seq=i + 1, time_ms=1_000 + i, task="t", stage="run", output=f"step {i % 9} ok")
        for i in range(400)
    ]
)
CONFIG = Config(request_id="r1", revision=1, tags=[f"tag-{i % 50}-{i}" for i in range(600)])


async def session(h: Harness, target_id: str, offer: list[str], chosen: str) -> AgentTransport:
    """An agent that said hello offering ``offer`` and got a welcome choosing ``chosen``."""
    agent = await h.agent(target_id)
    await agent.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)
    assert await agent.send(Hello(boot_id="b", compression=offer))
    got = await h.manager.recv(timeout_s=TIMEOUT_S)
    assert got is not None and got[1] == Hello(boot_id="b", compression=offer)
    assert await h.manager.send(target_id, Welcome(compression=chosen))
    assert isinstance(await next_message(agent), Welcome)
    return agent


def stats(h: Harness, agent: AgentTransport) -> tuple[int, int, int, int]:
    assert isinstance(h.manager, ZmqManagerTransport) and isinstance(agent, ZmqAgentTransport)
    assert h.manager.wire is not None
    m, a = h.manager.wire, agent.wire
    return m.received_compressed, m.sent_compressed, a.received_compressed, a.sent_compressed


async def exchange(h: Harness, agent: AgentTransport, target_id: str) -> None:
    """A large message each way arrives intact."""
    assert await agent.send(BATCH)
    got = await h.manager.recv(timeout_s=TIMEOUT_S)
    assert got == (target_id, BATCH)
    assert await h.manager.send(target_id, CONFIG)
    assert await next_message(agent) == CONFIG


async def test_negotiated_compression_is_used_both_ways(zh: Harness) -> None:
    agent = await session(zh, "dev-1", ["zlib"], "zlib")
    before = zh.manager.wire.received_bytes if zh.manager.wire else 0
    await exchange(zh, agent, "dev-1")
    assert stats(zh, agent) == (1, 1, 1, 1)
    assert zh.manager.wire is not None
    assert zh.manager.wire.received_bytes - before < len(BATCH.entries) * 10  # << plain size


async def test_without_an_offer_or_a_choice_nothing_is_compressed(zh: Harness) -> None:
    older = await session(zh, "dev-1", [], "")  # an agent that offers nothing
    await exchange(zh, older, "dev-1")
    assert stats(zh, older) == (0, 0, 0, 0)
    declined = await session(zh, "dev-2", ["zlib"], "")  # a manager with compression off
    await exchange(zh, declined, "dev-2")
    assert stats(zh, declined)[2:] == (0, 0)


async def test_an_agent_ignores_a_choice_it_did_not_offer(zh: Harness) -> None:
    agent = await session(zh, "dev-1", [], "zlib")  # a confused manager: the agent stays plain
    assert await agent.send(BATCH)
    assert await zh.manager.recv(timeout_s=TIMEOUT_S) == ("dev-1", BATCH)
    assert stats(zh, agent)[3] == 0


async def test_a_new_hello_starts_plain_until_its_welcome(zh: Harness) -> None:
    agent = await session(zh, "dev-1", ["zlib"], "zlib")
    assert await agent.send(Hello(boot_id="b2", compression=["zlib"]))
    assert await zh.manager.recv(timeout_s=TIMEOUT_S) is not None
    await exchange(zh, agent, "dev-1")  # no welcome yet: both sides plain
    assert stats(zh, agent) == (0, 0, 0, 0)
