"""Health snapshots and the connectivity check (loopback only)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from swarmdeploy.agent.health import HealthProbe, HealthSnapshot, check_connectivity, resolve
from swarmdeploy.agent.resources import DiskPolicy


def test_snapshot_has_plausible_values(tmp_path: Path) -> None:
    snap = HealthProbe(tmp_path, DiskPolicy(low_disk_bytes=0)).snapshot()
    assert snap.uptime_s > 0 and 0 <= snap.cpu_percent <= 100 * 64
    assert snap.memory_total_bytes >= snap.memory_available_bytes > 0
    assert snap.disk.path == str(tmp_path) and snap.disk.total_bytes > snap.disk.free_bytes > 0
    assert snap.agent_rss_bytes > 1 << 20
    assert not snap.disk_low
    lo = {i.name: i for i in snap.interfaces}["lo"]
    assert lo.up and "127.0.0.1" in lo.addresses
    raw = msgspec.json.encode(snap)
    assert msgspec.json.decode(raw, type=HealthSnapshot) == snap


def test_snapshot_agrees_with_psutil(tmp_path: Path) -> None:
    # The figures are read from /proc and netlink directly; psutil (a test dependency only)
    # defines what they mean.
    probe = HealthProbe(tmp_path, DiskPolicy(low_disk_bytes=0))
    psutil.cpu_percent(interval=None)
    busy_until = time.monotonic() + 0.3
    while time.monotonic() < busy_until:  # some CPU time for both to see
        pass
    snap = probe.snapshot()
    theirs = psutil.cpu_percent(interval=None)
    assert 0 < snap.cpu_percent <= 100 and abs(snap.cpu_percent - theirs) < 25
    memory = psutil.virtual_memory()
    assert snap.memory_total_bytes == memory.total
    assert abs(snap.memory_available_bytes - memory.available) < memory.total * 0.05
    disk = psutil.disk_usage(str(tmp_path))
    assert snap.disk.total_bytes == disk.total and abs(snap.disk.percent - disk.percent) < 0.5
    assert abs(snap.uptime_s - (time.time() - psutil.boot_time())) < 2
    assert abs(snap.agent_rss_bytes - psutil.Process().memory_info().rss) < 8 << 20
    families = (socket.AF_INET, socket.AF_INET6)
    stats = psutil.net_if_stats()
    expected = {
        name: (sorted(a.address for a in addrs if a.family in families), stats[name].isup)
        for name, addrs in psutil.net_if_addrs().items()
    }
    assert {i.name: (sorted(i.addresses), i.up) for i in snap.interfaces} == expected
    assert [i.name for i in snap.interfaces] == sorted(expected)


def test_snapshot_reports_low_disk(tmp_path: Path) -> None:
    policy = DiskPolicy(max_data_bytes=1000, low_disk_bytes=2000)
    assert HealthProbe(tmp_path, policy).snapshot().disk_low


async def test_connectivity_to_listening_port() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await check_connectivity("127.0.0.1", port, timeout_s=2)
    assert result.resolved and result.connected and result.error is None
    assert result.addresses == ["127.0.0.1"] and result.latency_ms is not None


async def test_connectivity_to_closed_port_reports_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await check_connectivity("127.0.0.1", port, timeout_s=2)
    assert result.resolved and not result.connected
    assert result.error is not None and result.error.startswith("127.0.0.1:")


async def test_connectivity_unresolvable_name() -> None:
    result = await check_connectivity("host.invalid", 80, timeout_s=2)
    assert not result.resolved and not result.connected and result.error


class _NoThreads(concurrent.futures.ThreadPoolExecutor):
    """A default executor that fails the test when anything is run in a thread."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{fn!r} was run in a worker thread")


async def test_ip_addresses_are_not_resolved_in_a_thread() -> None:
    asyncio.get_running_loop().set_default_executor(_NoThreads())
    assert await resolve("127.0.0.1", 80) == ["127.0.0.1"]
    assert await resolve("::1", 80) == ["::1"]
    with pytest.raises(AssertionError, match="worker thread"):
        await resolve("localhost", 80)  # a name does need the resolver


def test_names_are_resolved_without_the_idna_codec() -> None:
    code = (
        "import asyncio, json, sys\n"
        "from swarmdeploy.agent.health import check_connectivity, resolve\n"
        "addresses = asyncio.run(resolve('localhost', 80))\n"
        "result = asyncio.run(check_connectivity('127.0.0.1', 9, timeout_s=2))\n"
        "print(json.dumps([addresses, result.resolved, 'encodings.idna' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    addresses, resolved, idna = json.loads(out.stdout)
    assert "127.0.0.1" in addresses or "::1" in addresses
    assert resolved and idna is False


async def test_the_health_loop_stops_when_cancelled_as_it_is_nudged(tmp_path: Path) -> None:
    """The agent's shutdown cancels the loop; a nudge in the same instant (a configuration
    just applied) must not swallow that cancellation. With ``asyncio.wait_for`` on Python
    3.11 it did: the loop slept on for a whole interval and the agent never stopped."""
    from swarmdeploy.agent.healthloop import HealthLoop

    sent = asyncio.Event()

    async def send(msg: object) -> bool:
        sent.set()
        return True

    loop = HealthLoop(
        tmp_path,
        DiskPolicy(),
        send,
        connected=lambda: True,
        manager=("127.0.0.1", 9),
        interval_s=3600,
    )
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(10):
        await sent.wait()  # the first report is out: the loop now sleeps on its nudge
    await asyncio.sleep(0)
    loop.nudge()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done == {task} and task.cancelled()
