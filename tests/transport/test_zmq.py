"""ZeroMQ-only behaviour: handshakes, hostile raw peers, restarts, lingering close (ADR 0002).

Raw peers are plain pyzmq sockets driven by the test, to send what a well-behaved
``ZmqAgentTransport`` never would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
import zmq
import zmq.asyncio
from tests.transport.harness import (
    TIMEOUT_S,
    Harness,
    greet,
    manager_receiving,
    next_event,
    next_message,
)

from swarmdeploy.crypto.curve import CurveKeyPair, generate_keypair
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    ALL_TOPIC,
    Bye,
    Error,
    Heartbeat,
    Hello,
    Hint,
    Subscribe,
    Welcome,
    decode,
    encode,
    id_topic,
    tag_topic,
)
from swarmdeploy.transport.base import AgentLinkConfig, LinkEvent, LinkState, ManagerLinkConfig
from swarmdeploy.transport.errors import BindError, TransportConfigError
from swarmdeploy.transport.zmq import ZmqAgentTransport, ZmqManagerTransport


@contextlib.asynccontextmanager
async def raw_dealer(
    h: Harness, keys: CurveKeyPair | None, routing_id: bytes
) -> AsyncIterator[zmq.asyncio.Socket]:
    """A hand-driven DEALER connected to the manager's ROUTER (CURVE unless ``keys`` is None)."""
    assert isinstance(h.manager, ZmqManagerTransport)
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = routing_id
    if keys is not None:
        sock.curve_serverkey = h.manager_keys.public.encode()
        sock.curve_publickey = keys.public.encode()
        sock.curve_secretkey = keys.secret.encode()
    sock.connect(f"tcp://127.0.0.1:{h.manager.ports[0]}")
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


async def _allowed_keys(h: Harness, target_id: str) -> CurveKeyPair:
    keys = generate_keypair()
    await h.manager.allow(target_id, keys.public)
    return keys


async def _reply(sock: zmq.asyncio.Socket) -> object:
    async with asyncio.timeout(TIMEOUT_S):
        return decode(await sock.recv())


async def test_wrong_manager_key_is_reported_as_handshake_failure(zh: Harness) -> None:
    agent = await zh.agent("dev-1", manager_key=generate_keypair().public)
    assert await agent.wait_state(LinkState.HANDSHAKE_FAILED, timeout_s=TIMEOUT_S)
    assert await zh.manager.recv(timeout_s=0.2) is None


async def test_garbage_from_an_authenticated_peer_is_answered_and_survived(zh: Harness) -> None:
    keys = await _allowed_keys(zh, "raw")
    receiving = asyncio.create_task(zh.manager.recv(timeout_s=TIMEOUT_S))  # it answers errors
    async with raw_dealer(zh, keys, b"raw/0123456789abcdef") as sock:
        await sock.send(b"\xc1 not msgpack")
        err = await _reply(sock)
        assert isinstance(err, Error) and err.code == "invalid_message"
        await sock.send(encode(Welcome()))  # a manager-only type
        err = await _reply(sock)
        assert isinstance(err, Error) and err.code == "wrong_direction"
        await sock.send(msgspec.msgpack.encode({"v": 9, "type": "hello"}))
        err = await _reply(sock)
        assert isinstance(err, Error) and err.code == "unsupported_version"
        await sock.send(encode(Hello(boot_id="fine")))
        assert await receiving == ("raw", Hello(boot_id="fine"))


async def test_routing_id_without_secret_part_is_refused(zh: Harness) -> None:
    keys = await _allowed_keys(zh, "raw")
    async with raw_dealer(zh, keys, b"raw") as sock:
        await sock.send(encode(Hello()))
        assert await zh.manager.recv(timeout_s=0.5) is None


async def test_multi_frame_messages_are_dropped(zh: Harness) -> None:
    keys = await _allowed_keys(zh, "raw")
    async with raw_dealer(zh, keys, b"raw/00") as sock:
        await sock.send_multipart([encode(Hello()), encode(Hello())])
        assert await zh.manager.recv(timeout_s=0.5) is None


async def test_plain_tcp_client_without_curve_gets_nothing(zh: Harness) -> None:
    async with raw_dealer(zh, None, b"x/1") as sock:
        await sock.send(encode(Hello()))
        assert await zh.manager.recv(timeout_s=0.5) is None


async def test_agent_reconnects_to_a_restarted_manager(zh: Harness) -> None:
    agent = await zh.agent("dev-1")
    await greet(zh, agent, "dev-1")
    assert isinstance(zh.manager, ZmqManagerTransport)
    sub_port, pub_port = zh.manager.ports
    await zh.manager.close()
    await agent.wait_state(LinkState.CONNECTING, timeout_s=TIMEOUT_S)
    config = ManagerLinkConfig(keys=zh.manager_keys, zmq_sub_port=sub_port, zmq_pub_port=pub_port)
    zh.manager = ZmqManagerTransport(config)
    assert isinstance(agent, ZmqAgentTransport)
    await zh.manager.allow("dev-1", agent.config.keys.public)  # from storage, before binding
    await zh.manager.start()
    await greet(zh, agent, "dev-1")
    assert await zh.manager.send("dev-1", Welcome(server_time_ms=3))
    assert await next_message(agent) == Welcome(server_time_ms=3)


async def test_replacing_a_key_drops_the_old_one(zh: Harness) -> None:
    old = await zh.agent("dev-1")
    await greet(zh, old, "dev-1")
    new_keys = generate_keypair()
    await zh.manager.allow("dev-1", new_keys.public)
    await old.wait_state(LinkState.AUTH_FAILED, timeout_s=TIMEOUT_S)
    new = await zh.agent("dev-1", keys=new_keys, allow=False)
    await greet(zh, new, "dev-1")


async def test_close_with_linger_lets_a_last_bye_leave(zh: Harness) -> None:
    agent = await zh.agent("dev-1")
    await greet(zh, agent, "dev-1")
    assert await agent.send(Bye(reason="shutdown"))
    await agent.close(linger_s=1.0)
    assert await zh.manager.recv(timeout_s=TIMEOUT_S) == ("dev-1", Bye(reason="shutdown"))


async def test_publishing_anything_but_a_hint_is_refused(zh: Harness) -> None:
    with pytest.raises(MessageError):
        await zh.manager.publish(ALL_TOPIC, Welcome())  # type: ignore[arg-type]
    with pytest.raises(MessageError):
        await zh.manager.send("dev-1", Hint())
    with pytest.raises(MessageError):
        await zh.manager.publish(b"TAG-x", Hint())  # not terminated: would prefix-match


async def test_an_agent_with_a_hint_socket_of_its_own_still_gets_hints(zh: Harness) -> None:
    """Agents older than ADR 0015 subscribe a SUB to the manager's PUB; it stays bound."""
    assert isinstance(zh.manager, ZmqManagerTransport)
    keys = await _allowed_keys(zh, "old-1")
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.curve_serverkey = zh.manager_keys.public.encode()
    sub.curve_publickey, sub.curve_secretkey = keys.public.encode(), keys.secret.encode()
    sub.subscribe(id_topic("old-1"))
    sub.connect(f"tcp://127.0.0.1:{zh.manager.ports[1]}")
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not await sub.poll(20):  # until the subscription reached the PUB
                await zh.manager.publish(id_topic("old-1"), Hint(reason="task", task_id="t1"))
            topic, data = await sub.recv_multipart()
        assert (topic, decode(data)) == (id_topic("old-1"), Hint(reason="task", task_id="t1"))
    finally:
        sub.close(linger=0)
        ctx.term()


async def test_hints_follow_an_agent_to_its_next_connection(zh: Harness) -> None:
    """A revocation drops every connection, and their subscriptions with them; the agent
    subscribes again on its new connection, before anything else."""
    agent = await zh.agent("dev-1", tags=["red"])
    await zh.agent("other-1")
    async with manager_receiving(zh):
        while (await next_event(agent)).state is not LinkState.CONNECTED:
            pass
        await _hint_arrives(zh, agent, tag_topic("red"))
        await zh.manager.revoke("other-1")
        assert await next_event(agent) == LinkEvent(LinkState.CONNECTING, "link lost")
        assert (await next_event(agent)).state is LinkState.CONNECTED
        await _hint_arrives(zh, agent, tag_topic("red"))


async def _hint_arrives(h: Harness, agent: ZmqAgentTransport | object, topic: bytes) -> None:
    assert isinstance(agent, ZmqAgentTransport)
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            await h.manager.publish(topic, Hint(reason="task", task_id="t1"))
            item = await agent.recv(timeout_s=0.05)
            if isinstance(item, Hint):
                return
            assert not isinstance(item, LinkEvent), item


async def test_a_subscription_is_the_connection_not_a_claim(zh: Harness) -> None:
    """``subscribe`` names tags only: the ``ID-`` topic is the authenticated sender's own, so a
    peer cannot take another target's hints; it never reaches the link above the transport."""
    keys = await _allowed_keys(zh, "raw")
    async with manager_receiving(zh) as received, raw_dealer(zh, keys, b"raw/0123456789ab") as sock:
        await sock.send(encode(Subscribe(tags=["red"])))
        async with asyncio.timeout(TIMEOUT_S):
            while not await sock.poll(20):
                await zh.manager.publish(tag_topic("red"), Hint(task_id="red"))
        assert decode(await sock.recv()) == Hint(task_id="red")
        await zh.manager.publish(id_topic("dev-1"), Hint(task_id="not-yours"))
        await zh.manager.publish(id_topic("raw"), Hint(task_id="yours"))
        while (hint := decode(await sock.recv())) == Hint(task_id="red"):
            pass  # the ones sent while waiting
        assert hint == Hint(task_id="yours")
    assert not received


async def test_a_manager_without_subscriptions_is_no_error_for_the_agent(zh: Harness) -> None:
    """A manager older than ADR 0015 answers ``subscribe`` with ``unsupported_type``: the agent
    keeps that to itself (hints are best effort) and passes on what follows."""
    agent = await zh.agent("dev-1")
    await greet(zh, agent, "dev-1")
    refusal = Error(code="unsupported_type", message="no", in_reply_to="subscribe")
    assert await zh.manager.send("dev-1", refusal)
    assert await zh.manager.send("dev-1", Welcome(server_time_ms=7))
    assert await next_message(agent) == Welcome(server_time_ms=7)


async def test_busy_port_gives_bind_error() -> None:
    ctx = zmq.Context()
    blocker = ctx.socket(zmq.REP)
    blocker.linger = 0
    port = blocker.bind_to_random_port("tcp://127.0.0.1")
    manager = ZmqManagerTransport(
        ManagerLinkConfig(keys=generate_keypair(), zmq_sub_port=port, zmq_pub_port=0)
    )
    try:
        with pytest.raises(BindError):
            await manager.start()
    finally:
        await manager.close()
        blocker.close()
        ctx.term()


def test_secret_keys_are_required() -> None:
    public_only = CurveKeyPair(public=generate_keypair().public)
    with pytest.raises(TransportConfigError):
        ZmqManagerTransport(ManagerLinkConfig(keys=public_only))
    config = AgentLinkConfig(
        target_id="a", keys=public_only, manager_public_key=generate_keypair().public
    )
    with pytest.raises(TransportConfigError):
        ZmqAgentTransport(config)


async def test_a_send_while_recv_waits_does_not_hide_a_queued_message(zh: Harness) -> None:
    """The manager sends on its ROUTER without the asyncio wrapper. libzmq signals "readable"
    once per empty-to-queued change, and any send consumes that signal: a send between the
    signal and the event loop's poll must wake the waiting receive, or the queued message
    (and every later one from that agent) waits for the next connection event."""
    agent = await zh.agent("dev-1")
    await greet(zh, agent, "dev-1")
    receiving = asyncio.create_task(zh.manager.recv(timeout_s=TIMEOUT_S))
    for _ in range(5):  # the receive reaches its wait on the socket
        await asyncio.sleep(0)
    assert not receiving.done()
    assert await agent.send(Heartbeat(sent_at_ms=1))
    time.sleep(0.3)  # noqa: ASYNC251 -- the loop held on purpose: the heartbeat is queued meanwhile
    assert await zh.manager.send("dev-1", Welcome())
    assert await receiving == ("dev-1", Heartbeat(sent_at_ms=1))


class Forwarder:
    """A TCP forwarder to ``upstream`` on 127.0.0.1 that can hang up its first connection at
    once and swallow everything while ``frozen`` (the connections stay open). ``close``
    closes every connection it made, also one still being set up."""

    def __init__(self, upstream: int, *, hang_up_first: bool = False) -> None:
        self._upstream = upstream
        self._hang_up_first = hang_up_first
        self.frozen = asyncio.Event()
        self._accepted = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free port; returns it."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._accepted += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            if self._hang_up_first and self._accepted == 1:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            writer.close()
            if up_writer is not None:
                up_writer.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not self.frozen.is_set():
                    writer.write(data)
                    await writer.drain()
        writer.close()  # the other direction ends too

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def test_a_connection_lost_during_the_handshake_is_retried_not_refused(
    zh: Harness,
) -> None:
    """A manager that stops or restarts in the middle of a handshake breaks the TCP
    connection (libzmq: ``HANDSHAKE_FAILED_NO_DETAIL`` with the errno). That is a lost link
    libzmq retries by itself, not a refused handshake: the agent never reports
    ``handshake_failed`` and connects on the next attempt."""
    assert isinstance(zh.manager, ZmqManagerTransport)
    keys = await _allowed_keys(zh, "dev-1")
    forwarders = [Forwarder(port, hang_up_first=True) for port in zh.manager.ports]
    try:
        sub_port, pub_port = [await f.start() for f in forwarders]
        agent = ZmqAgentTransport(
            AgentLinkConfig(
                target_id="dev-1",
                keys=keys,
                manager_public_key=zh.manager_keys.public,
                zmq_sub_port=sub_port,
                zmq_pub_port=pub_port,
                reconnect_ivl_s=0.05,
                reconnect_ivl_max_s=0.1,
            )
        )
        try:
            await agent.connect()
            states = []
            async with asyncio.timeout(TIMEOUT_S):
                while agent.state is not LinkState.CONNECTED:
                    item = await agent.recv()
                    if isinstance(item, LinkEvent):
                        states.append(item.state)
            assert LinkState.HANDSHAKE_FAILED not in states
            assert agent.handshakes_broken >= 1
            assert await agent.send(Hello(boot_id="dev-1"))
            got = await zh.manager.recv(timeout_s=TIMEOUT_S)
            assert got == ("dev-1", Hello(boot_id="dev-1"))
        finally:
            await agent.close()
    finally:
        for forwarder in forwarders:
            await forwarder.close()


async def test_an_agent_notices_a_silent_manager_by_its_own_pings(zh: Harness) -> None:
    """The manager sends no ZMTP pings; an agent whose connection goes silent (the manager's
    host gone, a half-open TCP connection) notices by the timeout of its own pings."""
    assert isinstance(zh.manager, ZmqManagerTransport)
    keys = await _allowed_keys(zh, "dev-1")
    forwarder = Forwarder(zh.manager.ports[0])
    try:
        agent = ZmqAgentTransport(
            AgentLinkConfig(
                target_id="dev-1",
                keys=keys,
                manager_public_key=zh.manager_keys.public,
                zmq_sub_port=await forwarder.start(),
                zmq_pub_port=zh.manager.ports[1],
                reconnect_ivl_s=0.05,
                reconnect_ivl_max_s=0.1,
                heartbeat_ivl_s=0.2,
                heartbeat_timeout_s=1.0,
            )
        )
        try:
            await agent.connect()
            await agent.wait_state(LinkState.CONNECTED, timeout_s=TIMEOUT_S)
            forwarder.frozen.set()
            await agent.wait_state(LinkState.CONNECTING, timeout_s=TIMEOUT_S)
        finally:
            await agent.close()
    finally:
        await forwarder.close()


async def test_handshakes_pass_while_the_event_loop_is_busy(zh: Harness) -> None:
    """The ZAP handler answers in its own thread: a connect storm's handshakes complete
    while the manager's event loop is busy (a handshake waits for its ZAP answer, and one
    that outlasts libzmq's handshake timeout is reset)."""
    assert isinstance(zh.manager, ZmqManagerTransport)
    keys = await _allowed_keys(zh, "raw")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey = zh.manager_keys.public.encode()
    sock.curve_publickey = keys.public.encode()
    sock.curve_secretkey = keys.secret.encode()
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        sock.connect(f"tcp://127.0.0.1:{zh.manager.ports[0]}")
        # the event loop is held (a blocking wait in a coroutine) until the handshake is done
        assert monitor.poll(int(TIMEOUT_S * 1000)), "no handshake while the event loop was busy"
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()
