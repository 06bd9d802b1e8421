"""Fixtures of the transport tests: the harness (both implementations) and resource hygiene."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import psutil
import pytest
from tests.transport.harness import Harness, make_harness

_SETTLE_S = 3.0


@pytest.fixture(autouse=True)
def no_leaked_threads_or_fds() -> Iterator[None]:
    """Fail a test that leaves threads (libzmq I/O threads of an unterminated context are
    native threads of this process) or file descriptors behind."""
    me = psutil.Process()
    threads, py_threads, fds = me.num_threads(), threading.active_count(), me.num_fds()
    yield
    deadline = time.monotonic() + _SETTLE_S
    while time.monotonic() < deadline:
        now = (me.num_threads(), threading.active_count(), me.num_fds())
        if now[0] <= threads and now[1] <= py_threads and now[2] <= fds:
            return
        time.sleep(0.02)
    pytest.fail(
        f"leaked resources: threads {threads}->{me.num_threads()}, "
        f"python threads {py_threads}->{threading.active_count()}, fds {fds}->{me.num_fds()}; "
        f"{[t.name for t in threading.enumerate()]}"
    )


@pytest.fixture(params=["memory", "zmq", "http"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A started manager (in memory or on real loopback sockets); closed after the test."""
    h = await make_harness(str(request.param))
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
async def zh() -> AsyncIterator[Harness]:
    """A started manager on real loopback ZeroMQ sockets (the ZeroMQ-only tests)."""
    h = await make_harness("zmq")
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
async def hh() -> AsyncIterator[Harness]:
    """A started manager on the HTTP link (the HTTP-only tests)."""
    h = await make_harness("http")
    try:
        yield h
    finally:
        await h.close()
