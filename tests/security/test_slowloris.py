"""Slowloris against the real manager process (issue 9, item 12): partial requests are closed
after the header deadline, a stalled body after the body timeout, connections beyond the
cap at once -- and the manager keeps answering, also with a lowered open-file limit."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from swarmdeploy.client import ManagerClient
from tests.cli.manager_proc import free_port, running_manager

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
CAP = 40


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, str]]:
    data = tmp_path_factory.mktemp("manager")
    args = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port()),
            "--header-timeout", str(HEADER_TIMEOUT_S), "--body-timeout", str(BODY_TIMEOUT_S),
            "--max-connections", str(CAP)]  # fmt: skip
    with running_manager(data, *args, nofile=128) as (base, key):
        yield base, int(base.rsplit(":", 1)[1]), key


def _open(port: int, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    with contextlib.suppress(OSError):  # a connection over the cap may be gone already
        sock.sendall(first)
    sock.setblocking(False)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _trickle(socks: list[socket.socket], deadline_s: float) -> float:
    """Send one header byte on every open socket every 0.2 s until the server closed them
    all (or ``deadline_s``); returns the seconds it took."""
    started = time.monotonic()
    open_socks = list(socks)
    while open_socks and time.monotonic() - started < deadline_s:
        for sock in list(open_socks):
            if _closed_by_server(sock):
                open_socks.remove(sock)
                continue
            with contextlib.suppress(OSError):
                sock.send(b"X")
        time.sleep(0.2)  # the attacker's pace, not a wait for the server
    assert not open_socks, f"{len(open_socks)} slow connection(s) still open"
    return time.monotonic() - started


def test_slow_and_idle_request_heads_are_closed_at_the_deadline(
    manager: tuple[str, int, str],
) -> None:
    base, port, _ = manager
    heads = [_open(port, b"GET /health HTTP/1.1\r\nHost: m\r\nX-Slow: ") for _ in range(30)]
    idle = [_open(port, b"") for _ in range(30)]  # 60 > CAP: some are refused at once
    try:
        took = _trickle(heads + idle, deadline_s=HEADER_TIMEOUT_S + 5)
        assert took < HEADER_TIMEOUT_S + 2
        with ManagerClient(base, None, timeout_s=5) as client:
            assert client.request("GET", "/health")["status"] == "ok"
    finally:
        for sock in heads + idle:
            sock.close()


def test_a_stalled_request_body_is_closed_after_the_body_timeout(
    manager: tuple[str, int, str],
) -> None:
    _, port, _ = manager
    head = (b"POST /rpc/targets HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"id\": ")  # fmt: skip
    sock = _open(port, head)
    try:
        started = time.monotonic()
        while not _closed_by_server(sock):
            assert time.monotonic() - started < BODY_TIMEOUT_S + HEADER_TIMEOUT_S + 5
            time.sleep(0.05)  # polling the condition above, bounded by the deadline
        assert time.monotonic() - started >= BODY_TIMEOUT_S * 0.9
    finally:
        sock.close()


def test_many_slow_connections_with_a_low_file_limit_do_not_stop_the_manager(
    manager: tuple[str, int, str],
) -> None:
    base, port, _ = manager
    socks = [_open(port, b"GET / HTTP/1.1\r\n") for _ in range(150)]  # > the 128 open files
    try:
        _trickle(socks, deadline_s=HEADER_TIMEOUT_S + 5)
        with ManagerClient(base, None, timeout_s=5) as client:
            assert client.request("GET", "/health")["status"] == "ok"
    finally:
        for sock in socks:
            sock.close()


async def test_an_event_stream_outlives_the_header_deadline(manager: tuple[str, int, str]) -> None:
    base, _, key = manager
    url = base.replace("http://", "ws://") + f"/events?access_token={key}"
    async with connect(url) as ws:
        await asyncio.sleep(HEADER_TIMEOUT_S * 2)  # past the deadline on purpose
        async with asyncio.timeout(5):
            await (await ws.ping())  # still open: the guard let go at the upgrade
