"""The HTTP agent keeps its connection alive across polls and requests (directly and through
an HTTP CONNECT proxy, where each tunnel is a connection), and opens a new one after the old
one broke. Connections are counted where they are accepted: at a loopback proxy."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.transport.harness import TIMEOUT_S, Harness, TcpProxy, greet
from tests.transport.proxies import ConnectProxy

from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.protocol.messages import Hello
from swarmdeploy.transport.base import AgentLinkConfig, LinkState
from swarmdeploy.transport.http_agent import HttpAgentTransport
from swarmdeploy.transport.http_client import HttpClient

POLLS = 100


async def _fast_poller(
    hh: Harness, target_id: str, url: str, proxy: str | None = None
) -> HttpAgentTransport:
    """An agent whose long-polls end after ~10 ms, so that 100 polls take a second."""
    keys = generate_keypair()
    await hh.manager.allow(target_id, keys.public)
    config = AgentLinkConfig(
        target_id=target_id, keys=keys, manager_public_key=hh.manager_keys.public,
        reconnect_ivl_s=0.05, reconnect_ivl_max_s=0.2,
    )  # fmt: skip
    agent = HttpAgentTransport(config, manager_url=url, proxy=proxy, poll_wait_s=0.01)
    hh.agents.append(agent)
    await agent.connect()
    await agent.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)
    return agent


async def _polls(agent: HttpAgentTransport, count: int) -> None:
    start = agent._counters["poll"]
    async with asyncio.timeout(60):
        while agent._counters["poll"] < start + count:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)


async def test_one_connection_carries_a_hundred_polls_and_the_sends(hh: Harness) -> None:
    assert hh.server is not None
    proxy = TcpProxy(hh.server.port)
    await proxy.start()
    try:
        agent = await _fast_poller(hh, "ka-1", f"http://127.0.0.1:{proxy.port}")
        await _polls(agent, POLLS)
        for n in range(5):
            assert await agent.send(Hello(boot_id=f"b{n}"))
            assert await hh.manager.recv(timeout_s=TIMEOUT_S) == ("ka-1", Hello(boot_id=f"b{n}"))
        await _polls(agent, 10)
        # The long-poll holds one connection, the sends use a second one (the poll is parked
        # while a send goes out); without keep-alive this would be ~115.
        assert proxy.accepted <= 3, proxy.accepted
        print(f"connections for {POLLS}+ polls and 5 sends: {proxy.accepted}")
        assert agent.connections_opened == proxy.accepted
        before = proxy.accepted
        proxy.sever()  # the kept connections break: the agent opens new ones and goes on
        await _polls(agent, POLLS)
        assert before < proxy.accepted <= before + 4, (before, proxy.accepted)
    finally:
        await hh.close()
        await proxy.close()


async def test_the_tunnel_of_a_connect_proxy_is_kept_too(hh: Harness) -> None:
    assert hh.server is not None
    proxy = ConnectProxy()
    await proxy.start()
    try:
        agent = await _fast_poller(
            hh, "ka-2", f"http://127.0.0.1:{hh.server.port}", f"http://127.0.0.1:{proxy.port}"
        )
        await greet(hh, agent, "ka-2")
        await _polls(agent, POLLS)
        assert 1 <= len(proxy.requested) <= 3, proxy.requested
    finally:
        await hh.close()
        await proxy.close()


async def test_a_kept_connection_the_server_closed_is_replaced_without_an_error() -> None:
    """A server that answers one request per connection and drops the connection when the
    second arrives, without an answer (a keep-alive timeout racing the client's next
    request): the request goes out once more on a new connection and gets its answer."""
    accepted = 0
    handlers: list[asyncio.Task[Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")  # the second request: dropped unanswered
        writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", max_body_bytes=1024)
    try:
        for _ in range(3):
            resp = await client.request("GET", "/x", None, TIMEOUT_S)
            assert (resp.status, resp.body) == (200, b"ok")
        assert accepted == client.connections_opened == 3
    finally:
        client.close()
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), TIMEOUT_S)  # each saw its close
