"""``/events`` over a real WebSocket (uvicorn on 127.0.0.1): auth, filters, slow clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from swarmdeploy.storage.records import LogRecord
from tests.manager.conftest import Api, make_settings, running_api

TIMEOUT_S = 10.0


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan already running) on a free loopback port; yields ws://host:port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(TIMEOUT_S):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no "started" event
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT_S):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


@pytest.fixture
async def live(api: Api) -> AsyncIterator[tuple[Api, str]]:
    async with serve(api.app) as base:
        yield api, base


async def test_events_without_credentials_are_refused_401(live: tuple[Api, str]) -> None:
    _, base = live
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{base}/events"):
            pass
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"{}")["code"] == "unauthorized"


async def test_events_unknown_topic_is_refused_422(live: tuple[Api, str]) -> None:
    api, base = live
    token = (await api.headers_for("viewer"))["Authorization"].split()[1]
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{base}/events?topics=logs,bogus&access_token={token}"):
            pass
    assert info.value.response.status_code == 422


async def test_logs_filtered_by_target_and_topics_by_subscription(live: tuple[Api, str]) -> None:
    api, base = live
    viewer = await api.headers_for("viewer")
    token = viewer["Authorization"].split()[1]
    async with (
        connect(f"{base}/events?topics=logs&target=a&access_token={token}") as logs_a,
        connect(f"{base}/events?topics=targetAdded", additional_headers=viewer) as added,
    ):
        await asyncio.sleep(0)  # both subscriptions exist once connect() returned
        await api.services.logs.ingest([LogRecord(1, "b", "t", "run", "x", "for b", seq=1)])
        await api.services.logs.ingest([LogRecord(2, "a", "t", "run", "x", "for a", seq=1)])
        assert (await api.register("newcomer")).status_code == 201
        message = await next_message(logs_a)
        assert message["topic"] == "logs"
        assert [line["output"] for line in message["payload"]] == ["for a"]
        message = await next_message(added)
        assert message["topic"] == "targetAdded" and message["payload"]["id"] == "newcomer"


async def test_task_events_follow_creation_and_stop(live: tuple[Api, str]) -> None:
    api, base = live
    assert (await api.register("t1", tags=["swarm"])).status_code == 201
    viewer = await api.headers_for("viewer")
    async with connect(
        f"{base}/events?topics=taskAdded,taskUpdated", additional_headers=viewer
    ) as ws:
        doc = {"deploy": {"run": {"commands": ["./a"]}, "target": {"tags": ["swarm"]}}}
        task_id = (await api.client.post("/tasks", json=doc)).json()["id"]
        added = await next_message(ws)
        assert (added["topic"], added["payload"]["id"]) == ("taskAdded", task_id)
        await api.client.put(f"/tasks/{task_id}/stop")
        updated = await next_message(ws)
        assert updated["topic"] == "taskUpdated"
        assert (updated["payload"]["task"], updated["payload"]["state"]) == (task_id, "stopped")


class RawWebSocket:
    """A minimal WebSocket client on a socket with a tiny receive buffer that reads only when
    asked: it stands for a client that stalls (no library reading ahead in the background)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int, path: str, token: str) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)  # no autotuning
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def next_message(self) -> dict[str, Any]:
        """Read one unfragmented text frame (server frames are not masked)."""
        async with asyncio.timeout(TIMEOUT_S):
            first, second = await self.reader.readexactly(2)
            assert first & 0x0F == 1, "text frame"
            size = second & 0x7F
            if size == 126:
                size = int.from_bytes(await self.reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await self.reader.readexactly(8), "big")
            message: dict[str, Any] = json.loads(await self.reader.readexactly(size))
        return message

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def small_queues(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    async with running_api(make_settings(tmp_path, event_queue_size=10)) as api:
        async with serve(api.app) as base:
            yield api, base


async def test_slow_client_does_not_block_others_and_learns_what_it_missed(
    small_queues: tuple[Api, str],
) -> None:
    api, base = small_queues
    viewer = await api.headers_for("viewer")
    port = int(base.rsplit(":", 1)[1])
    slow = await RawWebSocket.open(
        "127.0.0.1", port, "/events?topics=logs", viewer["Authorization"].split()[1]
    )
    blob = "x" * (64 * 1024)
    total = 300
    try:
        async with connect(f"{base}/events?topics=logs", additional_headers=viewer) as fast:
            await asyncio.sleep(0)
            for i in range(total):  # the fast client reads every event; the slow one stalls
                api.services.events.publish("logs", [{"i": i, "blob": blob}], target="t")
                message = await next_message(fast)
                assert message["payload"][0]["i"] == i
        dropped = api.services.metrics.events_dropped
        assert dropped > 0, "the stalled client's queue must have overflowed"
        seen: list[int] = []
        notices: list[int] = []
        while not seen or seen[-1] != total - 1:
            message = await slow.next_message()
            if message["topic"] == "dropped":
                notices.append(message["payload"]["count"])
            else:
                seen.append(message["payload"][0]["i"])
        assert sum(notices) == dropped
        assert len(seen) + sum(notices) == total
        assert seen == sorted(seen)
    finally:
        await slow.close()
