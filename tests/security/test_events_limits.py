"""``/events`` over a real WebSocket (issue 9, items 5 and 11): deleting an API key closes
its open streams at once, and a client that stops reading is dropped once more than
``event_queue_bytes`` of events wait for it -- a client that reads keeps everything."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from swarmdeploy.manager.events import CloseReason, Subscription
from tests.manager.api.test_events_ws import TIMEOUT_S, serve
from tests.manager.conftest import Api, make_settings, running_api

QUEUE_BYTES = 256 << 10


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    settings = make_settings(tmp_path, event_queue_bytes=QUEUE_BYTES)
    async with running_api(settings) as api, serve(api.app) as base:
        yield api, base


async def _subscription(api: Api, key_id: str) -> Subscription:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            subs = [s for s in api.services.events.subscriptions() if s.key_id == key_id]
            if subs:
                return subs[0]
            await asyncio.sleep(0.01)  # polling the condition above, bounded by the timeout


async def test_deleting_an_api_key_closes_its_open_event_stream(live: tuple[Api, str]) -> None:
    api, base = live
    record, key = await api.services.api_keys.create("watcher", "viewer")
    async with connect(f"{base}/events?access_token={key}") as ws:
        await _subscription(api, record.id)
        resp = await api.client.delete(f"/api_keys/{record.id}")
        assert resp.status_code == 204
        async with asyncio.timeout(TIMEOUT_S):
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 1008 and ws.close_reason == "the credential was revoked"
    assert api.services.events.subscriber_count == 0


async def test_a_key_deleted_elsewhere_ends_its_stream_at_the_next_recheck(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, events_recheck_s=0.2)
    async with running_api(settings) as api, serve(api.app) as base:
        record, key = await api.services.api_keys.create("watcher", "viewer")
        async with connect(f"{base}/events?access_token={key}") as ws:
            await _subscription(api, record.id)
            await api.storage.delete_api_key(record.id)  # as another replica would
            async with asyncio.timeout(TIMEOUT_S):
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            assert ws.close_code == 1008


async def _stalled_client(base: str, key: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (a small fixed
    receive buffer: loopback autotuning would otherwise absorb up to 32 MiB)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", int(base.rsplit(":", 1)[1])))
    nonce = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /events?topics=logs&access_token={key} HTTP/1.1\r\nHost: manager\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    async with asyncio.timeout(TIMEOUT_S):
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


async def test_a_client_that_stops_reading_is_dropped_a_reader_keeps_up(
    live: tuple[Api, str],
) -> None:
    api, base = live
    reader_rec, reader_key = await api.services.api_keys.create("reader", "viewer")
    staller_rec, staller_key = await api.services.api_keys.create("staller", "viewer")
    events = 200  # 200 x 64 KiB = 12.5 MiB: more than the socket buffers hold
    received = 0

    async def read_all(ws: ClientConnection) -> None:
        nonlocal received
        async for _ in ws:
            received += 1
            if received == events:
                return

    staller = await _stalled_client(base, staller_key)
    try:
        async with connect(f"{base}/events?topics=logs&access_token={reader_key}") as reader:
            reading = asyncio.create_task(read_all(reader))
            fast = await _subscription(api, reader_rec.id)
            slow = await _subscription(api, staller_rec.id)
            for n in range(events):
                api.services.events.publish("logs", [{"n": n, "output": "x" * (64 << 10)}])
                async with asyncio.timeout(TIMEOUT_S):
                    while fast.queued:  # noqa: ASYNC110 - the reader keeps up: it took the event
                        await asyncio.sleep(0.001)  # polling, bounded by the timeout
                assert slow.queued_bytes <= QUEUE_BYTES
            async with asyncio.timeout(TIMEOUT_S):
                await reading
            assert received == events and fast.reason is None
            assert slow.reason is CloseReason.TOO_SLOW
            assert api.services.events.subscriber_count == 1
    finally:
        staller.close()
