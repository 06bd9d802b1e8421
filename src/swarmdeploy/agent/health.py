"""Health data for the secondary loop of seed 000: uptime, CPU, memory, disk, network, RSS.

The health loop (the daemon's) calls :meth:`HealthProbe.snapshot` periodically, independent
of the main loop, and sends the result to the manager. :func:`check_connectivity` is the
"can name resolution be performed, can the central server be connected with" check of seed
000. Only the daemon's health loop imports this module (psutil costs a few MB of RSS).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from pathlib import Path

import msgspec
import psutil

from swarmdeploy.agent.resources import DiskPolicy, free_bytes


class DiskInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Usage of the file system holding the data dir."""

    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float


class InterfaceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One network interface: whether it is up, and its IPv4/IPv6 addresses."""

    name: str
    up: bool
    addresses: list[str]


class Connectivity(msgspec.Struct, frozen=True, kw_only=True):
    """Result of a connectivity check against ``host:port``."""

    host: str
    port: int
    resolved: bool
    connected: bool
    addresses: list[str] = msgspec.field(default_factory=list)
    latency_ms: float | None = None
    error: str | None = None


class HealthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One health sample (``time_ms``: epoch milliseconds)."""

    time_ms: int
    uptime_s: float
    cpu_percent: float
    load_avg: tuple[float, float, float]
    memory_total_bytes: int
    memory_available_bytes: int
    memory_percent: float
    disk: DiskInfo
    disk_low: bool
    interfaces: list[InterfaceInfo]
    agent_rss_bytes: int


class HealthProbe:
    """Takes health snapshots. CPU percent is measured between two consecutive snapshots."""

    def __init__(self, data_dir: Path, policy: DiskPolicy) -> None:
        self._data_dir = data_dir
        self._policy = policy
        self._me = psutil.Process()
        psutil.cpu_percent(interval=None)  # prime: the first call has no baseline

    def snapshot(self) -> HealthSnapshot:
        """Collect a sample now (blocking, a few milliseconds)."""
        memory = psutil.virtual_memory()
        usage = psutil.disk_usage(str(self._data_dir))
        disk = DiskInfo(
            path=str(self._data_dir),
            total_bytes=usage.total,
            used_bytes=usage.used,
            free_bytes=usage.free,
            percent=usage.percent,
        )
        load = psutil.getloadavg()
        return HealthSnapshot(
            time_ms=time.time_ns() // 1_000_000,
            uptime_s=round(time.time() - psutil.boot_time(), 1),
            cpu_percent=psutil.cpu_percent(interval=None),
            load_avg=(load[0], load[1], load[2]),
            memory_total_bytes=memory.total,
            memory_available_bytes=memory.available,
            memory_percent=memory.percent,
            disk=disk,
            disk_low=free_bytes(self._data_dir, self._policy) < self._policy.low_disk_bytes,
            interfaces=_interfaces(),
            agent_rss_bytes=self._me.memory_info().rss,
        )


def _interfaces() -> list[InterfaceInfo]:
    stats = psutil.net_if_stats()
    families = (socket.AF_INET, socket.AF_INET6)
    out = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        addresses = [a.address for a in addrs if a.family in families]
        up = bool(stats[name].isup) if name in stats else False
        out.append(InterfaceInfo(name=name, up=up, addresses=addresses))
    return out


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` for TCP, without duplicates; :class:`OSError` if none.

    An IP address is returned as it is, without the resolver (and its worker thread). An
    ASCII name goes to the resolver as bytes: a ``str`` would load the ``idna`` codec, and
    with it :mod:`unicodedata` (about 0.4 MB resident for the agent's whole life).
    """
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_connectivity(host: str, port: int, timeout_s: float = 5.0) -> Connectivity:
    """Resolve ``host`` and open a TCP connection to ``port``, all within ``timeout_s``.

    Never raises for network problems: the result says what failed (``resolved``,
    ``connected``, ``error``).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        addresses = await asyncio.wait_for(resolve(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        reason = "name resolution timed out" if isinstance(exc, TimeoutError) else str(exc)
        return Connectivity(host=host, port=port, resolved=False, connected=False, error=reason)
    error = "no address"
    for address in addresses:
        started = loop.time()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), max(deadline - started, 0.001)
            )
        except (OSError, TimeoutError) as exc:
            error = f"{address}: " + ("timed out" if isinstance(exc, TimeoutError) else str(exc))
            continue
        writer.close()
        await writer.wait_closed()
        latency = round((loop.time() - started) * 1000, 2)
        return Connectivity(
            host=host,
            port=port,
            resolved=True,
            connected=True,
            addresses=addresses,
            latency_ms=latency,
        )
    return Connectivity(
        host=host, port=port, resolved=True, connected=False, addresses=addresses, error=error
    )
