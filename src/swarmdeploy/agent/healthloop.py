"""The health loop (seed 000's secondary loop), independent of the main loop.

Every ``interval_s`` it samples the device (:class:`~swarmdeploy.agent.health.HealthProbe`:
uptime, load, CPU, memory, disk, interfaces, the agent's RSS) and sends a ``health`` report
while connected (the latest one wins, nothing is queued). While the link is down it checks
whether the manager can be resolved and reached (:func:`~swarmdeploy.agent.health.
check_connectivity`) and logs the result. It also keeps :attr:`HealthLoop.disk_low`, which
pauses fetching (seed 000: check the disk before fetching). ``extra`` adds optional fields to
every report (the daemon's security status), ``position`` the device's last reported position
fix (``swarmdeploy.agent.gpsd``), if it follows one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmdeploy.agent.reports import Send
from swarmdeploy.agent.resources import DiskPolicy, machine_arch
from swarmdeploy.protocol.messages import Health, NetInterface, Position

if TYPE_CHECKING:
    from swarmdeploy.agent.health import HealthProbe, HealthSnapshot

logger = logging.getLogger(__name__)
_LABEL = 64


class HealthLoop:
    """Samples and reports health periodically (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        policy: DiskPolicy,
        send: Send,
        *,
        connected: Callable[[], bool],
        manager: tuple[str, int],
        interval_s: float,
        extra: Callable[[], dict[str, Any]] = dict,
        position: Callable[[], Position | None] = lambda: None,
    ) -> None:
        self._data_dir = data_dir
        self._policy = policy
        self._send = send
        self._connected = connected
        self._manager = manager
        self._interval_s = interval_s
        self._extra = extra
        self._position = position
        self.disk_low = False
        self.reachable = True
        self._nudge = asyncio.Event()

    async def run(self) -> None:
        """Sample, report, sleep; forever (cancel to stop)."""
        from swarmdeploy.agent.health import HealthProbe

        probe = HealthProbe(self._data_dir, self._policy)
        while True:
            try:
                await self.once(probe)
            except Exception:  # top of the loop: a failed sample must not end the loop
                logger.exception("health sample failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._nudge.wait()
            self._nudge.clear()

    def nudge(self) -> None:
        """Take the next sample now (e.g. right after connecting: the manager shows health
        without waiting a whole interval)."""
        self._nudge.set()

    async def once(self, probe: HealthProbe) -> Health:
        """Take one sample, update the flags, send it if connected; return the report."""
        snapshot = probe.snapshot()
        if snapshot.disk_low != self.disk_low:
            if snapshot.disk_low:
                logger.warning(
                    "disk is low (%d bytes free): fetching paused", snapshot.disk.free_bytes
                )
            else:
                logger.info("disk space recovered: fetching resumed")
        self.disk_low = snapshot.disk_low
        connected = self._connected()
        if connected:
            self.reachable = True
        else:
            await self._check_connectivity()
        report = to_message(snapshot, reachable=self.reachable)
        report.extra = self._extra()
        report.position = self._position()
        if connected:
            await self._send(report)
        return report

    async def _check_connectivity(self) -> None:
        from swarmdeploy.agent.health import check_connectivity

        host, port = self._manager
        result = await check_connectivity(host, port, timeout_s=5.0)
        if result.connected != self.reachable:
            logger.info(
                "manager %s:%d %s", host, port,
                "reachable" if result.connected else f"unreachable: {result.error}",
            )  # fmt: skip
        self.reachable = result.connected


def to_message(s: HealthSnapshot, *, reachable: bool) -> Health:
    """The wire ``health`` report of a snapshot (labels cut to the wire's limits)."""
    interfaces = [
        NetInterface(
            name=i.name[:_LABEL], addresses=[a[:_LABEL] for a in i.addresses[:64]], up=i.up
        )
        for i in s.interfaces[:256]
    ]
    return Health(
        at_ms=s.time_ms,
        uptime_s=max(s.uptime_s, 0.0),
        load_1m=max(s.load_avg[0], 0.0),
        cpu_percent=max(s.cpu_percent, 0.0),
        mem_total_bytes=s.memory_total_bytes,
        mem_available_bytes=s.memory_available_bytes,
        disk_total_bytes=s.disk.total_bytes,
        disk_free_bytes=s.disk.free_bytes,
        agent_rss_bytes=s.agent_rss_bytes,
        disk_low=s.disk_low,
        manager_reachable=reachable,
        interfaces=interfaces,
        os=device_facts()[0],
        arch=device_facts()[1],
        agent_version=device_facts()[2],
    )


@functools.cache
def device_facts() -> tuple[str, str, str]:
    """``os``, ``arch`` and ``agent_version`` of the ``health`` report (read once)."""
    from swarmdeploy import __version__

    return os_name()[:_LABEL], machine_arch()[:_LABEL], __version__[:_LABEL]


def os_name(os_release: Path = Path("/etc/os-release")) -> str:
    """``PRETTY_NAME`` of ``os-release`` (e.g. ``Debian GNU/Linux 12 (bookworm)``), else the
    kernel's name and release (``Linux 6.1.0``)."""
    try:
        lines = os_release.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "PRETTY_NAME" and value.strip():
            return value.strip().strip('"').strip("'")
    return f"{platform.system()} {platform.release()}".strip()
