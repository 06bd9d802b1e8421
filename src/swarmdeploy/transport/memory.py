"""In-process transport with the semantics of ``transport.zmq``, for tests of agent and
manager logic (house style: a real fake behind the seam, no mocks).

A :class:`MemoryNetwork` joins one :class:`MemoryManagerTransport` and any number of
:class:`MemoryAgentTransport`. Every message is encoded and decoded on the way, so what
cannot travel on the wire cannot travel here either. Like the ZeroMQ link:

* an agent connects only while the manager is open and its key is allowed; the manager
  knows it by the target id its key was allowed for, and drops messages whose claimed id
  differs (impersonation) or whose key was revoked meanwhile;
* ``revoke`` drops every connection (they reconnect at once; the revoked one fails with
  ``auth_failed``); a refused agent retries when the allow-list changes;
* the manager routes to a target once it has received its ``hello``; ``cut`` severs one
  agent's link, losing what was in flight both ways, and the agent reconnects; ``partition``
  keeps it down until ``heal``.
"""

from __future__ import annotations

import asyncio
import logging

from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    ALL_TOPIC,
    Error,
    Hello,
    Hint,
    Message,
    decode,
    encode,
    id_topic,
)
from swarmdeploy.transport.base import (
    AgentLinkConfig,
    AgentTransport,
    Lifecycle,
    LinkState,
    ManagerTransport,
)
from swarmdeploy.transport.errors import TransportClosed, TransportConfigError
from swarmdeploy.transport.link import (
    AgentInbox,
    AllowList,
    check_topic,
    decode_from_agent,
    require_addressed_outgoing,
    require_agent_outgoing,
    require_hint,
)

log = logging.getLogger(__name__)
_INBOX_SIZE = 10_000


class MemoryNetwork:
    """The wire between one manager and its agents; also the test's handle on failures."""

    def __init__(self) -> None:
        self.manager: MemoryManagerTransport | None = None
        self.agents: list[MemoryAgentTransport] = []
        self._down: set[str] = set()

    def is_down(self, target_id: str) -> bool:
        """Whether ``target_id``'s link is partitioned."""
        return target_id in self._down

    async def cut(self, target_id: str) -> None:
        """Sever the links of agents claiming ``target_id``; they reconnect at once."""
        for agent in self._claiming(target_id):
            await agent._drop("link lost")
            await agent._handshake()

    async def partition(self, target_id: str) -> None:
        """Sever the links of agents claiming ``target_id`` until :meth:`heal`."""
        self._down.add(target_id)
        for agent in self._claiming(target_id):
            await agent._drop("link lost")

    async def heal(self, target_id: str) -> None:
        """End a :meth:`partition`; the agents reconnect."""
        self._down.discard(target_id)
        for agent in self._claiming(target_id):
            await agent._handshake()

    def _claiming(self, target_id: str) -> list[MemoryAgentTransport]:
        return [a for a in self.agents if a.config.target_id == target_id]

    async def _reconnect_all(self, *, drop: bool) -> None:
        for agent in list(self.agents):
            if drop:
                await agent._drop("manager dropped the connection")
            await agent._handshake()


class MemoryManagerTransport(ManagerTransport):
    """Manager side of :class:`MemoryNetwork` (one per network)."""

    def __init__(self, network: MemoryNetwork) -> None:
        if network.manager is not None:
            raise TransportConfigError("a MemoryNetwork has one manager")
        network.manager = self
        self._net = network
        self._allowed = AllowList()
        self._routes: dict[str, MemoryAgentTransport] = {}
        self._inbox: asyncio.Queue[tuple[MemoryAgentTransport, int, bytes]] = asyncio.Queue(
            _INBOX_SIZE
        )
        self._closed = asyncio.Event()

    def owner_of(self, key: str) -> str | None:
        """The target id ``key`` is allowed for (the ZAP ``User-Id``), if any."""
        return self._allowed.owner(key) if self._lifecycle is Lifecycle.OPEN else None

    async def start(self) -> None:
        """Open; waiting agents connect now."""
        self._require(Lifecycle.NEW)
        self._lifecycle = Lifecycle.OPEN
        await self._net._reconnect_all(drop=False)

    async def send(self, target_id: str, msg: Message) -> bool:
        """See :meth:`ManagerTransport.send`."""
        self._require(Lifecycle.OPEN)
        require_addressed_outgoing(msg)
        data = encode(msg)
        agent = self._routes.get(target_id)
        if agent is None or agent.state is not LinkState.CONNECTED:
            return False
        return agent._inbox.offer(decode(data))

    async def publish(self, topic: bytes, msg: Hint) -> None:
        """See :meth:`ManagerTransport.publish`."""
        self._require(Lifecycle.OPEN)
        require_hint(msg)
        check_topic(topic)
        data = encode(msg)
        for agent in self._net.agents:
            if agent.state is LinkState.CONNECTED and topic in agent._topics:
                agent._inbox.offer(decode(data))

    async def recv(self, timeout_s: float | None = None) -> tuple[str, Message] | None:
        """See :meth:`ManagerTransport.recv`."""
        self._require(Lifecycle.OPEN)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    agent, epoch, data = await self._next()
                    accepted = self._accept(agent, epoch, data)
                    if accepted is not None:
                        return accepted
        except TimeoutError:
            return None

    async def _next(self) -> tuple[MemoryAgentTransport, int, bytes]:
        getter = asyncio.ensure_future(self._inbox.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not getter.done():
                getter.cancel()
        if not getter.done() or getter.cancelled():
            raise TransportClosed("MemoryManagerTransport is closed")
        return getter.result()

    def _accept(
        self, agent: MemoryAgentTransport, epoch: int, data: bytes
    ) -> tuple[str, Message] | None:
        if epoch != agent._epoch:
            return None  # sent on a connection that has been dropped since: lost in flight
        user = self._allowed.owner(agent.config.keys.public)
        claimed = agent.config.target_id
        if user is None or user != claimed:
            log.warning("dropped a message claiming %r from key of %r", claimed, user)
            return None
        try:
            msg = decode_from_agent(data)
        except MessageError as exc:
            log.warning("invalid message from %s: %s", user, exc)
            agent._inbox.offer(Error(code=exc.code, message=str(exc)[:4096]))
            return None
        if isinstance(msg, Hello) or user not in self._routes:
            self._routes[user] = agent
        return user, msg

    async def allow(self, target_id: str, curve_public_key: str) -> None:
        """See :meth:`ManagerTransport.allow`."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        old = self._allowed.allow(target_id, curve_public_key)
        if old == curve_public_key:
            return
        if self._lifecycle is Lifecycle.OPEN:
            await self._net._reconnect_all(drop=old is not None)
            if old is not None:
                self._routes.clear()

    async def revoke(self, target_id: str) -> None:
        """See :meth:`ManagerTransport.revoke`."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        if not self._allowed.revoke(target_id):
            return
        if self._lifecycle is Lifecycle.OPEN:
            self._routes.clear()  # like a re-bind: every route must be re-established
            await self._net._reconnect_all(drop=True)

    def is_allowed(self, target_id: str) -> bool:
        """See :meth:`ManagerTransport.is_allowed`."""
        return target_id in self._allowed

    async def close(self) -> None:
        """See :meth:`ManagerTransport.close`."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        was_open = self._lifecycle is Lifecycle.OPEN
        self._lifecycle = Lifecycle.CLOSED
        self._closed.set()
        self._net.manager = None
        if was_open:
            for agent in list(self._net.agents):
                await agent._drop("manager closed")


class MemoryAgentTransport(AgentTransport):
    """Agent side of :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, config: AgentLinkConfig) -> None:
        self.config = config
        self._net = network
        self._inbox = AgentInbox(config.queue_size)
        self._epoch = 0
        self._topics: set[bytes] = {id_topic(config.target_id), ALL_TOPIC}

    async def connect(self) -> None:
        """See :meth:`AgentTransport.connect`."""
        self._require(Lifecycle.NEW)
        self._lifecycle = Lifecycle.OPEN
        self._net.agents.append(self)
        await self._inbox.set_state(LinkState.CONNECTING)
        await self._handshake()

    async def _handshake(self) -> None:
        if self._lifecycle is not Lifecycle.OPEN or self.state is LinkState.CONNECTED:
            return
        manager = self._net.manager
        if manager is None or self._net.is_down(self.config.target_id):
            await self._inbox.set_state(LinkState.CONNECTING)
            return
        if manager.owner_of(self.config.keys.public) is None:
            await self._inbox.set_state(LinkState.AUTH_FAILED, "the manager refused our key")
            return
        self._epoch += 1
        await self._inbox.set_state(LinkState.CONNECTED)

    async def _drop(self, detail: str) -> None:
        if self.state is not LinkState.CONNECTED:
            return
        self._epoch += 1  # messages still in flight on the old connection are lost
        await self._inbox.set_state(LinkState.CONNECTING, detail)

    async def send(self, msg: Message) -> bool:
        """See :meth:`AgentTransport.send`."""
        self._require(Lifecycle.OPEN)
        require_agent_outgoing(msg)
        data = encode(msg)
        manager = self._net.manager
        if manager is None or self.state is not LinkState.CONNECTED:
            return False
        try:
            manager._inbox.put_nowait((self, self._epoch, data))
        except asyncio.QueueFull:
            return False
        return True

    async def close(self, linger_s: float = 0.0) -> None:
        """See :meth:`AgentTransport.close`."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        if self in self._net.agents:
            self._net.agents.remove(self)
        self._epoch += 1
        await self._inbox.set_state(LinkState.CLOSED)
