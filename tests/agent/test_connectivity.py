"""The seed-000 connectivity check (``agent/connectivity.py``) against real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from swarmdeploy.agent.connectivity import ConnectivityCheck, parse_hosts, proxy_address


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(hosts: tuple[tuple[str, int], ...], **kw: object) -> ConnectivityCheck:
    return ConnectivityCheck(
        hosts, proxy=kw.get("proxy"), manager_connected=lambda: True,  # type: ignore[arg-type]
        link_up=lambda: bool(kw.get("link", True)), resolve=fake_dns, timeout_s=2.0,
    )  # fmt: skip


async def fake_dns(host: str, timeout_s: float) -> bool:
    """Names of this test's world (no DNS traffic leaves the machine)."""
    return host in ("127.0.0.1", "localhost")


async def test_reachable_hosts_make_it_ok(listener: int) -> None:
    c = check((("127.0.0.1", listener), ("localhost", listener)))
    result = await c.check()
    assert result.ok and c.ok and result.dns is True
    assert result.hosts == {f"127.0.0.1:{listener}": True, f"localhost:{listener}": True}


async def test_an_unreachable_host_defers_and_is_named(listener: int) -> None:
    port = closed_port()
    c = check((("127.0.0.1", listener), ("127.0.0.1", port)))
    result = await c.check()
    assert not result.ok and not c.ok
    assert result.problem == f"unreachable: 127.0.0.1:{port}"
    assert c.report() is not None and c.report()["ok"] is False  # type: ignore[index]


async def test_a_name_that_does_not_resolve_is_reported() -> None:
    result = await check((("no-such-host.example", 80),)).check()
    assert not result.ok and result.dns is False and result.problem == "name resolution fails"


async def test_with_a_proxy_names_are_not_resolved_and_only_the_proxy_is_tried(
    listener: int,
) -> None:
    c = check((("manager.example.onion", 80),), proxy=("127.0.0.1", listener))
    result = await c.check()
    assert result.ok and result.dns is None
    assert result.hosts == {f"127.0.0.1:{listener}": True}


async def test_no_interface_up_is_not_ok(listener: int) -> None:
    result = await check((("127.0.0.1", listener),), link=False).check()
    assert not result.ok and result.problem == "no network interface is up"


async def test_without_hosts_nothing_is_checked_and_fetching_never_waits() -> None:
    c = check(())
    assert c.ok and c.report() is None
    assert (await c.check()).ok


@pytest.mark.parametrize("text", ["host", "host:", ":80", "host:0", "host:70000", "h:8x"])
def test_bad_host_lists_name_the_entry(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_hosts(f"ok.example:1,{text}")


def test_host_lists_parse_and_drop_duplicates() -> None:
    assert parse_hosts(" a.example:443, [::1]:80,a.example:443,") == (
        ("a.example", 443),
        ("::1", 80),
    )
    assert proxy_address("socks5h://127.0.0.1:9050") == ("127.0.0.1", 9050)
    assert proxy_address(None) is None
