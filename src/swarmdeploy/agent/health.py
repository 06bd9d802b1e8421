"""Health data for the secondary loop of seed 000: uptime, CPU, memory, disk, network, RSS.

The health loop (the daemon's) calls :meth:`HealthProbe.snapshot` periodically, independent
of the main loop, and sends the result to the manager. :func:`check_connectivity` is the
"can name resolution be performed, can the central server be connected with" check of seed
000.

The figures are read from Linux directly -- ``/proc/uptime``, ``/proc/stat``,
``/proc/meminfo``, ``/proc/self/statm``, :func:`os.statvfs`, :func:`os.getloadavg` and a
netlink dump of the interfaces and their addresses -- with psutil's definitions (the tests
compare both). psutil itself would keep about 1 MB resident in the agent for these few
numbers (docs/performance.md, "Agent memory").
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from swarmdeploy.agent.resources import DiskPolicy, free_bytes

logger = logging.getLogger(__name__)


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
        self._cpu = cpu_times()  # the first snapshot's baseline

    def snapshot(self) -> HealthSnapshot:
        """Collect a sample now (blocking, a few milliseconds)."""
        total, available = memory_bytes()
        load = os.getloadavg()
        return HealthSnapshot(
            time_ms=time.time_ns() // 1_000_000,
            uptime_s=round(float(_read("/proc/uptime").split()[0]), 1),
            cpu_percent=self._cpu_percent(),
            load_avg=(load[0], load[1], load[2]),
            memory_total_bytes=total,
            memory_available_bytes=available,
            memory_percent=round((total - available) / total * 100, 1) if total else 0.0,
            disk=disk_info(self._data_dir),
            disk_low=free_bytes(self._data_dir, self._policy) < self._policy.low_disk_bytes,
            interfaces=interfaces(),
            agent_rss_bytes=int(_read("/proc/self/statm").split()[1]) * _PAGE,
        )

    def _cpu_percent(self) -> float:
        (busy0, total0), (busy1, total1) = self._cpu, cpu_times()
        self._cpu = (busy1, total1)
        return round(max(busy1 - busy0, 0) / (total1 - total0) * 100, 1) if total1 > total0 else 0.0


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _read(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read()


def cpu_times() -> tuple[int, int]:
    """(busy, total) CPU time of the whole system in ticks since boot, as psutil counts
    them: guest time is part of user time already, idle and iowait are not busy."""
    fields = [int(x) for x in _read("/proc/stat").split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - (fields[4] if len(fields) > 4 else 0), total


def memory_bytes() -> tuple[int, int]:
    """(total, available) memory in bytes; available as the kernel estimates it."""
    info: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        name, _, value = line.partition(":")
        fields = value.split()
        if fields:
            info[name] = int(fields[0]) * 1024
    available = info.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = sum(info.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return info["MemTotal"], available


def disk_info(path: Path) -> DiskInfo:
    """Usage of the file system holding ``path`` (free: what an unprivileged writer may use)."""
    fs = os.statvfs(path)
    total, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    percent = round(used / (used + free) * 100, 1) if used + free else 0.0
    return DiskInfo(
        path=str(path), total_bytes=total, used_bytes=used, free_bytes=free, percent=percent
    )


# --- network interfaces over rtnetlink (linux/netlink.h, linux/rtnetlink.h) ---------------

_NLMSG = struct.Struct("=IHHII")  # length, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTA = struct.Struct("=HH")  # length, type
_RTM_GETLINK, _RTM_GETADDR, _NLMSG_DONE, _NLMSG_ERROR = 18, 22, 3, 2
_DUMP_REQUEST = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
_IFLA_IFNAME, _IFA_ADDRESS, _IFA_LOCAL = 3, 1, 2
_IFF_UP, _IFF_RUNNING = 0x1, 0x40
_SCOPE_LINK = 253
_NETLINK_TIMEOUT_S = 2.0


def interfaces() -> list[InterfaceInfo]:
    """Every network interface, sorted by name: up (and running) or not, and its IPv4 and
    IPv6 addresses (link-local ones with ``%<name>``, as psutil shows them). Empty, with a
    warning, where the kernel does not answer (no netlink)."""
    try:
        links = _links()
        addresses = _addresses(links)
    except OSError as exc:
        logger.warning("cannot list the network interfaces: %s", exc)
        return []
    found = [InterfaceInfo(name=n, up=up, addresses=addresses[i]) for i, (n, up) in links.items()]
    return sorted(found, key=lambda i: i.name)


def _links() -> dict[int, tuple[str, bool]]:
    links: dict[int, tuple[str, bool]] = {}
    for body in _netlink_dump(_RTM_GETLINK, _IFINFO.size):
        _, _, index, flags, _ = _IFINFO.unpack_from(body)
        name = _attributes(body, _IFINFO.size).get(_IFLA_IFNAME, b"").split(b"\0", 1)[0]
        up = (flags & (_IFF_UP | _IFF_RUNNING)) == (_IFF_UP | _IFF_RUNNING)
        links[index] = (name.decode("utf-8", "replace"), up)
    return links


def _addresses(links: dict[int, tuple[str, bool]]) -> dict[int, list[str]]:
    addresses: dict[int, list[str]] = {index: [] for index in links}
    for body in _netlink_dump(_RTM_GETADDR, _IFADDR.size):
        family, _, _, scope, index = _IFADDR.unpack_from(body)
        attrs = _attributes(body, _IFADDR.size)
        # IPv4: the local address (IFA_ADDRESS is the peer's on point-to-point links).
        keys = {socket.AF_INET: (_IFA_LOCAL, _IFA_ADDRESS), socket.AF_INET6: (_IFA_ADDRESS,)}
        raw = next((attrs[k] for k in keys.get(family, ()) if k in attrs), None)
        if raw is None or index not in addresses:
            continue
        text = socket.inet_ntop(family, raw)
        link_local = family == socket.AF_INET6 and scope == _SCOPE_LINK
        addresses[index].append(f"{text}%{links[index][0]}" if link_local else text)
    return addresses


def _netlink_dump(kind: int, header_size: int) -> Iterator[memoryview]:
    """The bodies of every message answering an rtnetlink dump request of ``kind``."""
    request = _NLMSG.pack(_NLMSG.size + header_size, kind, _DUMP_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(_NETLINK_TIMEOUT_S)
        sock.sendall(request + bytes(header_size))  # family AF_UNSPEC: everything
        while True:
            data = memoryview(sock.recv(1 << 16))
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, msg_type, _, _, _ = _NLMSG.unpack_from(data, offset)
                if msg_type == _NLMSG_DONE or length < _NLMSG.size:
                    return
                if msg_type == _NLMSG_ERROR:
                    raise OSError("netlink dump refused")
                if length >= _NLMSG.size + header_size:
                    yield data[offset + _NLMSG.size : offset + length]
                offset += (length + 3) & ~3


def _attributes(body: memoryview, header_size: int) -> dict[int, bytes]:
    """The route attributes after a message's fixed header (type -> payload)."""
    found: dict[int, bytes] = {}
    offset = header_size
    while offset + _RTA.size <= len(body):
        length, kind = _RTA.unpack_from(body, offset)
        if length < _RTA.size:
            break
        found.setdefault(kind, bytes(body[offset + _RTA.size : offset + length]))
        offset += (length + 3) & ~3
    return found


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
        async with asyncio.timeout(timeout_s):
            addresses = await resolve(host, port)
    except (OSError, TimeoutError) as exc:
        reason = "name resolution timed out" if isinstance(exc, TimeoutError) else str(exc)
        return Connectivity(host=host, port=port, resolved=False, connected=False, error=reason)
    error = "no address"
    for address in addresses:
        started = loop.time()
        try:
            async with asyncio.timeout(max(deadline - started, 0.001)):
                _, writer = await asyncio.open_connection(address, port)
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
