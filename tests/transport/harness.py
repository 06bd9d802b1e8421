"""Test harness for the link suite: one manager and its agents, on ZeroMQ or in memory.

The ZeroMQ flavour runs real sockets on 127.0.0.1 (free ports picked by the kernel) and can
put a TCP proxy between an agent and the manager's ROUTER so that a test can sever the link
in the middle of a transfer (:meth:`Harness.cut`), like a NAT timeout or a flaky radio.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable
from typing import Any

import uvicorn

from swarmdeploy.crypto.curve import CurveKeyPair, generate_keypair
from swarmdeploy.protocol.messages import Hello, Message
from swarmdeploy.transport.base import (
    AgentLinkConfig,
    AgentTransport,
    LinkEvent,
    LinkState,
    ManagerLinkConfig,
    ManagerTransport,
)
from swarmdeploy.transport.http_agent import HttpAgentTransport
from swarmdeploy.transport.http_manager import HttpLinkConfig, HttpManagerTransport
from swarmdeploy.transport.memory import MemoryAgentTransport, MemoryManagerTransport, MemoryNetwork
from swarmdeploy.transport.zmq import ZmqAgentTransport, ZmqManagerTransport

TIMEOUT_S = 5.0


class TcpProxy:
    """Forwards TCP connections to ``port`` on 127.0.0.1; :meth:`sever` cuts them all.

    It counts the connections it accepted and the bytes it carried from the manager to the
    agent; with ``cut_after`` set it severs every connection once, when that many bytes have
    gone downstream (a line that drops in the middle of a download)."""

    def __init__(self, port: int, *, cut_after: int | None = None) -> None:
        self._upstream = port
        self._server: asyncio.Server | None = None
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self._down_until = 0.0
        self.port = 0
        self.accepted = 0
        self.downstream_bytes = 0
        self.cut_after = cut_after

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if asyncio.get_running_loop().time() < self._down_until:
            writer.transport.abort()  # the line is still down
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links.append((writer, up_writer))
        for src, dst, down in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pump(src, dst, down))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
        try:
            while data := await src.read(65536):
                if down and self.cut_after is not None:
                    room = self.cut_after - self.downstream_bytes
                    if len(data) >= room:
                        dst.write(data[:room])
                        self.downstream_bytes += room
                        self.cut_after = None  # once
                        self.sever()
                        return
                if down:
                    self.downstream_bytes += len(data)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()

    def sever(self, down_s: float = 0.0) -> None:
        """Abort every proxied connection (both sides see a reset) and refuse new ones for
        ``down_s`` (an HTTP agent between two requests has no connection to lose)."""
        self._down_until = asyncio.get_running_loop().time() + down_s
        for down, up in self._links:
            down.transport.abort()
            up.transport.abort()
        self._links.clear()

    async def close(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pumps):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclasses.dataclass
class Harness:
    """A started manager plus the agents a test creates; :meth:`close` ends everything."""

    kind: str
    manager: ManagerTransport
    manager_keys: CurveKeyPair
    network: MemoryNetwork | None = None
    agents: list[AgentTransport] = dataclasses.field(default_factory=list)
    proxies: dict[str, TcpProxy] = dataclasses.field(default_factory=dict)
    server: HttpServer | None = None
    #: ``proxy`` argument of HTTP agents (tests of SOCKS5 and CONNECT proxies set it).
    agent_proxy: str | None = None
    manager_host: str = "127.0.0.1"

    def _ports(self) -> tuple[int, int]:
        if isinstance(self.manager, ZmqManagerTransport):
            return self.manager.ports
        if self.server is not None:
            return self.server.port, 5556
        return 5557, 5556

    async def agent(
        self,
        target_id: str,
        *,
        keys: CurveKeyPair | None = None,
        allow: bool = True,
        tags: Iterable[str] = (),
        via_proxy: bool = False,
        manager_key: str | None = None,
    ) -> AgentTransport:
        """Create (and optionally allow) an agent claiming ``target_id`` and connect it."""
        keys = keys or generate_keypair()
        if allow:
            await self.manager.allow(target_id, keys.public)
        sub_port, pub_port = self._ports()
        if via_proxy and self.kind in ("zmq", "http"):
            proxy = TcpProxy(sub_port)
            await proxy.start()
            self.proxies[target_id] = proxy
            sub_port = proxy.port
        config = AgentLinkConfig(
            target_id=target_id,
            keys=keys,
            manager_public_key=manager_key or self.manager_keys.public,
            manager_host="127.0.0.1",
            zmq_sub_port=sub_port,
            zmq_pub_port=pub_port,
            reconnect_ivl_s=0.05,
            reconnect_ivl_max_s=0.2,
        )
        agent: AgentTransport
        if self.network is not None:
            agent = MemoryAgentTransport(self.network, config)
        elif self.kind == "http":
            agent = HttpAgentTransport(
                config,
                manager_url=f"http://{self.manager_host}:{sub_port}",
                proxy=self.agent_proxy,
                poll_wait_s=1.0,
            )
        else:
            agent = ZmqAgentTransport(config)
        await agent.set_tags(tags)
        self.agents.append(agent)
        await agent.connect()
        return agent

    async def cut(self, target_id: str) -> None:
        """Sever the link of the agent claiming ``target_id`` (it was made ``via_proxy``)."""
        if self.network is not None:
            await self.network.cut(target_id)
        else:
            self.proxies[target_id].sever(down_s=0.3 if self.kind == "http" else 0.0)

    async def close(self) -> None:
        for agent in self.agents:
            await agent.close()
        await self.manager.close()
        if self.server is not None:
            await self.server.close()
        for proxy in self.proxies.values():
            await proxy.close()


class HttpServer:
    """uvicorn serving an HTTP link's ASGI app at ``/agent`` on a free loopback port."""

    def __init__(self, transport: HttpManagerTransport) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/agent/"):
                scope = {**scope, "path": scope["path"][len("/agent") :]}
            await transport.asgi(scope, receive, send)

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_config=None,
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(TIMEOUT_S):
            while not self._server.started:  # noqa: ASYNC110 - uvicorn offers no event
                await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


async def make_harness(kind: str) -> Harness:
    """A started manager of ``kind`` (``memory``, ``zmq`` or ``http``) on free loopback
    ports."""
    keys = generate_keypair()
    if kind == "http":
        http = HttpManagerTransport(HttpLinkConfig(keys=keys))
        await http.start()
        server = HttpServer(http)
        await server.start()
        return Harness(kind, http, keys, server=server)
    if kind == "memory":
        network = MemoryNetwork()
        memory = MemoryManagerTransport(network)
        await memory.start()
        return Harness(kind, memory, keys, network=network)
    config = ManagerLinkConfig(keys=keys, zmq_sub_port=0, zmq_pub_port=0)
    zmq_manager = ZmqManagerTransport(config)
    await zmq_manager.start()
    return Harness(kind, zmq_manager, keys)


async def next_message(agent: AgentTransport, timeout_s: float = TIMEOUT_S) -> Message:
    """The next message (skipping link events); fails after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            item = await agent.recv()
            if item is not None and not isinstance(item, LinkEvent):
                return item


async def next_event(agent: AgentTransport, timeout_s: float = TIMEOUT_S) -> LinkEvent:
    """The next link event (skipping messages); fails after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            item = await agent.recv()
            if isinstance(item, LinkEvent):
                return item


async def greet(h: Harness, agent: AgentTransport, target_id: str) -> None:
    """Wait for the link, send ``hello`` and see the manager receive it from ``target_id``."""
    await agent.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)
    assert await agent.send(Hello(boot_id=target_id))
    got = await h.manager.recv(timeout_s=TIMEOUT_S)
    assert got is not None
    assert got == (target_id, Hello(boot_id=target_id))


@contextlib.asynccontextmanager
async def manager_receiving(harness: Harness) -> AsyncIterator[list[tuple[str, Message]]]:
    """A manager that keeps receiving, as a running one does (a ZeroMQ agent's ``subscribe``
    reaches the manager's transport through its receive); yields what it received."""
    received: list[tuple[str, Message]] = []

    async def receive() -> None:
        while True:
            got = await harness.manager.recv()
            if got is not None:
                received.append(got)

    task = asyncio.create_task(receive())
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
