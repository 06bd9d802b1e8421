"""HTTP link specifics with real processes: an agent that knows its manager only by an
``.onion``-style name its SOCKS5 proxy alone can resolve registers, deploys and streams logs
through the proxy; a ZeroMQ agent and an HTTP agent share one manager."""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import socket
import threading
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

import httpx
import pytest

from swarmdeploy.localfleet import LocalFleet, wait_for
from tests.e2e.conftest import FAST_AGENT, FAST_MANAGER, zip_b64
from tests.transport.harness import TcpProxy
from tests.transport.proxies import Socks5Proxy

ONION = "swarmdeploye2exxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion"


class Served(Protocol):
    """A loopback server of the tests: started and closed on an event loop."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=Served)


class InThread(Generic[S]):
    """Runs ``server`` (a SOCKS5 proxy, a line that can drop) on an event loop of its own in
    a thread: the fleet is synchronous."""

    def __init__(self, server: S) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-server")

    def __enter__(self) -> S:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def mixed(tmp_path: pathlib.Path) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path, manager_args=FAST_MANAGER, agent_args=FAST_AGENT) as fleet:
        fleet.start_manager()
        yield fleet


def test_an_onion_agent_registers_and_deploys_through_socks5_next_to_a_zmq_agent(
    mixed: LocalFleet,
) -> None:
    fleet = mixed
    with InThread(Socks5Proxy({ONION: "127.0.0.1"})) as proxy:
        zmq_token, tor_token = fleet.tokens("mixed", 2)
        fleet.start_agent("zmq-1", token=zmq_token)
        onion_url = f"http://{ONION}:{fleet.http_port}"
        fleet.start_agent(
            "tor-1",
            token=tor_token,
            extra_args=["--transport", "http", "--manager", onion_url,
                        "--proxy", f"socks5h://127.0.0.1:{proxy.port}"],
        )  # fmt: skip
        fleet.wait_online(["zmq-1", "tor-1"])
        doc = {
            "debug": True,
            "source": {"zip": zip_b64({"hi.sh": "echo hello from $(hostname)-run\n"})},
            "deploy": {"run": {"commands": ["sh hi.sh"]}, "target": {"ids": ["zmq-1", "tor-1"]}},
        }
        task = str(fleet.api.request("POST", "/tasks", json=doc)["id"])
        fleet.wait_states(task, {"zmq-1": "exited", "tor-1": "exited"})

        def logged() -> bool:
            lines = [x for x in fleet.logs(task=task, target="tor-1") if "-run" in x["output"]]
            return len(lines) == 1

        wait_for(logged, timeout_s=30, what="the HTTP agent's output, stored once")
        assert {host for host, _ in proxy.requested} == {ONION}
        assert set(proxy.address_types) == {3}  # always the name: resolved by the proxy
        assert "Traceback" not in fleet.agent_log("tor-1")

        def transport_of(target_id: str) -> str | None:
            extra = (fleet.target(target_id).get("health") or {}).get("__extra__") or {}
            return extra.get("transport")

        wait_for(lambda: transport_of("tor-1") == "http", timeout_s=60, what="tor-1's transport")
        assert transport_of("zmq-1") == "zmq"


def test_the_link_endpoint_refuses_garbage_and_metrics_count_it(mixed: LocalFleet) -> None:
    fleet = mixed
    fleet.start_agent("http-1", token=fleet.tokens("m", 1)[0], extra_args=["--transport", "http"])
    fleet.wait_online(["http-1"])
    refused = httpx.post(f"{fleet.url}/agent/v1/link", content=b"SDH1" + bytes(100), timeout=10)
    assert refused.status_code == 400 and refused.json()["code"] == "bad_envelope"
    assert httpx.get(f"{fleet.url}/agent/v1/link", timeout=10).status_code == 405
    headers = {"Authorization": f"Bearer {fleet.admin_key}"}
    text = httpx.get(f"{fleet.url}/metrics", headers=headers, timeout=10).text
    assert "swarmdeploy_http_link_agents 1.0" in text
    assert 'swarmdeploy_http_link_requests_refused_total{code="bad_envelope"} 1.0' in text


def test_a_fetch_waits_while_a_connectivity_host_is_unreachable(mixed: LocalFleet) -> None:
    fleet = mixed
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        fleet.start_agent(
            "seed-1",
            token=fleet.tokens("c", 1)[0],
            extra_args=["--transport", "http", "--health-interval-s", "1",
                        "--connectivity-hosts", f"127.0.0.1:{port}"],
        )  # fmt: skip
        fleet.wait_online(["seed-1"])
        doc = {
            "source": {"zip": zip_b64({"hi.sh": "echo fetched\n"})},
            "deploy": {"run": {"commands": ["sh hi.sh"]}, "target": {"ids": ["seed-1"]}},
        }
        task = str(fleet.api.request("POST", "/tasks", json=doc)["id"])
        fleet.wait_states(task, {"seed-1": "transferring"})

        def reported(ok: bool) -> bool:
            health = fleet.target("seed-1").get("health") or {}
            seen = (health.get("__extra__") or {}).get("connectivity") or {}
            return seen.get("ok") is ok

        wait_for(lambda: reported(False), timeout_s=30, what="connectivity reported down")
        assert fleet.states(task) == {"seed-1": "transferring"}  # deferred, not failed
        headers = {"Authorization": f"Bearer {fleet.admin_key}"}

        def failing_hosts() -> bool:  # /metrics: a count per check, the gauges cached 15 s
            text = httpx.get(f"{fleet.url}/metrics", headers=headers, timeout=10).text
            return 'swarmdeploy_targets_connectivity_failing{check="hosts"} 1.0' in text

        wait_for(failing_hosts, timeout_s=40, what="the failing check counted in /metrics")
        probe.listen(8)  # the host is reachable now
        fleet.wait_states(task, {"seed-1": "exited"})
        wait_for(lambda: reported(True), timeout_s=30, what="connectivity reported up")


def test_a_payload_download_cut_in_the_middle_resumes_and_installs(mixed: LocalFleet) -> None:
    fleet = mixed
    payload = base64.b64encode(os.urandom(3 * 1024 * 1024)).decode()  # stored, not deflated
    with InThread(TcpProxy(fleet.http_port)) as line:
        fleet.start_agent(
            "far-1",
            token=fleet.tokens("far", 1)[0],
            extra_args=["--transport", "http", "--manager", f"http://127.0.0.1:{line.port}"],
        )  # fmt: skip
        fleet.wait_online(["far-1"])
        before = line.downstream_bytes
        line.cut_after = before + len(payload) * 6 // 10  # drops 60 % into the download
        doc = {
            "debug": True,
            "source": {"zip": zip_b64({"big.txt": payload, "run.sh": "wc -c < big.txt\n"})},
            "deploy": {"run": {"commands": ["sh run.sh"]}, "target": {"ids": ["far-1"]}},
        }
        task = str(fleet.api.request("POST", "/tasks", json=doc)["id"])
        fleet.wait_states(task, {"far-1": "exited"})
        assert line.cut_after is None, "the line never dropped: the test tested nothing"
        sent = line.downstream_bytes - before
        # 60 % once, then the rest (and the polls): starting over would be over 1.6x.
        assert sent < 1.5 * len(payload), (sent, len(payload))
        print(f"bytes down the line: {sent} for a {len(payload)}-byte payload")
        wait_for(
            lambda: any(str(len(payload)) in x["output"]
                        for x in fleet.logs(task=task, target="far-1")),
            timeout_s=30, what="the installed payload's size in the log",
        )  # fmt: skip
        assert "resuming" in fleet.agent_log("far-1")


def test_a_stopping_manager_answers_parked_polls_instead_of_waiting_them_out(
    mixed: LocalFleet,
) -> None:
    """uvicorn's graceful stop waits for open requests: without the drain every stop of a
    manager with HTTP agents waited out its shutdown timeout and then cancelled the polls.
    The agent is told to come back later, and does, to the next manager."""
    fleet = mixed
    fleet.start_agent("http-1", token=fleet.tokens("d", 1)[0], extra_args=["--transport", "http"])
    fleet.wait_online(["http-1"])
    assert fleet.stop_manager() == 0
    log = fleet.manager_log()
    assert "HTTP agent link draining" in log
    assert "timeout graceful shutdown exceeded" not in log
    fleet.start_manager()
    fleet.wait_online(["http-1"])
    assert "unknown_key" not in fleet.agent_log("http-1")
