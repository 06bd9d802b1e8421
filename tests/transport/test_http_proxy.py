"""HTTP link agents through proxies on loopback: SOCKS5 with a name only the proxy can
resolve (Tor's ``.onion`` case: the agent must never look it up itself) and HTTP CONNECT."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from tests.transport.harness import Harness, greet, next_message
from tests.transport.proxies import ConnectProxy, Socks5Proxy

from swarmdeploy.protocol.messages import Welcome
from swarmdeploy.transport.base import LinkState
from swarmdeploy.transport.errors import TransportConfigError
from swarmdeploy.transport.http_client import HttpClient

ONION = "swarmdeploymanagerxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name this process resolves (the agent must never resolve the onion)."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    return seen


async def test_an_agent_reaches_an_onion_name_through_socks5_without_resolving_it(
    hh: Harness, lookups: list[str]
) -> None:
    proxy = Socks5Proxy({ONION: "127.0.0.1"})
    await proxy.start()
    try:
        hh.agent_proxy = f"socks5h://127.0.0.1:{proxy.port}"
        hh.manager_host = ONION
        agent = await hh.agent("tor-1")
        await greet(hh, agent, "tor-1")
        assert await hh.manager.send("tor-1", Welcome(server_time_ms=7))
        assert await next_message(agent) == Welcome(server_time_ms=7)
        assert proxy.requested and set(proxy.requested) == {(ONION, hh._ports()[0])}
        assert set(proxy.address_types) == {3}  # the name, never an address
        assert ONION not in lookups
    finally:
        await hh.close()
        await proxy.close()


async def test_an_agent_works_through_an_http_connect_proxy(hh: Harness) -> None:
    proxy = ConnectProxy()
    await proxy.start()
    try:
        hh.agent_proxy = f"http://127.0.0.1:{proxy.port}"
        agent = await hh.agent("corp-1")
        await greet(hh, agent, "corp-1")
        assert await hh.manager.send("corp-1", Welcome(server_time_ms=8))
        assert await next_message(agent) == Welcome(server_time_ms=8)
        assert set(proxy.requested) == {("127.0.0.1", hh._ports()[0])}
    finally:
        await hh.close()
        await proxy.close()


async def test_a_proxy_that_cannot_reach_the_manager_keeps_the_agent_connecting(
    hh: Harness,
) -> None:
    proxy = Socks5Proxy({})  # resolves nothing
    await proxy.start()
    try:
        hh.agent_proxy = f"socks5h://127.0.0.1:{proxy.port}"
        hh.manager_host = ONION
        agent = await hh.agent("lost-1")
        with pytest.raises(TimeoutError):
            await agent.wait_state(LinkState.CONNECTED, timeout_s=0.5)
        assert agent.state is LinkState.CONNECTING
        assert proxy.requested
    finally:
        await hh.close()
        await proxy.close()


@pytest.mark.parametrize(
    ("manager", "proxy", "problem"),
    [
        ("https://m:8080", None, "must be a http:// URL"),
        ("http://m:8080", "socks5://127.0.0.1:9050", "must be a socks5h:// or http:// URL"),
        ("http://m:8080", "ftp://p:1", "must be a socks5h:// or http:// URL"),
        ("http://m:notaport", None, "is not a valid URL"),
    ],
)
def test_bad_urls_are_refused_with_the_problem_named(
    manager: str, proxy: str | None, problem: str
) -> None:
    with pytest.raises(TransportConfigError, match=problem):
        HttpClient(manager, proxy=proxy, max_body_bytes=1024)
