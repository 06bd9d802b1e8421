"""Health history: a bounded series of each target's health reports, for charts.

Agents report health every 30 s by default; the history keeps at most one sample per target
every ``sample_interval_s`` (the first report after that) and drops samples older than
``keep_s`` (a background job). Which report was stored last is kept in memory, so a report
that is not sampled costs no storage access; after a restart the next report is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from swarmdeploy.manager.clock import Clock
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import HealthSample

log = logging.getLogger(__name__)

#: Most samples one answer carries (24 h at one per minute).
MAX_POINTS = 1440


def sample_of(target_id: str, at_ms: int, health: Mapping[str, Any]) -> HealthSample:
    """The stored figures of one health report (the ``health`` document of the target)."""

    def number(key: str) -> float:
        value = health.get(key, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    return HealthSample(
        target_id=target_id,
        at_ms=at_ms,
        cpu_percent=number("cpu_percent"),
        load_1m=number("load_1m"),
        mem_total_bytes=int(number("mem_total_bytes")),
        mem_available_bytes=int(number("mem_available_bytes")),
        disk_total_bytes=int(number("disk_total_bytes")),
        disk_free_bytes=int(number("disk_free_bytes")),
        agent_rss_bytes=int(number("agent_rss_bytes")),
    )


class HealthHistory:
    """Samples health reports into storage and answers the series of one target."""

    def __init__(
        self, storage: Storage, *, clock: Clock, sample_interval_s: float, keep_s: float
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._interval_ms = int(sample_interval_s * 1000)
        self._keep_ms = int(keep_s * 1000)
        self._last: dict[str, int] = {}
        self._positions: dict[str, tuple[float, float]] = {}

    def sample_due(
        self, target_id: str, at_ms: int, health: Mapping[str, Any]
    ) -> HealthSample | None:
        """The sample to store with this report (the link stores it in the report's group
        commit, ``ContactWrite.sample``) if the target's last stored sample is
        ``sample_interval_s`` old, else ``None``. Call :meth:`sampled` once it is stored."""
        last = self._last.get(target_id)
        if last is not None and at_ms - last < self._interval_ms:
            return None
        return sample_of(target_id, at_ms, health)

    def sampled(self, target_id: str, at_ms: int) -> None:
        """A sample of ``target_id`` taken at ``at_ms`` is stored."""
        self._last[target_id] = max(at_ms, self._last.get(target_id, at_ms))

    def moved(self, target_id: str, health: Mapping[str, Any]) -> bool:
        """Whether the report carries a device position other than the target's last one
        (the agent throttles its fixes, so each change is worth a ``targetUpdated``: the map
        follows the device). After a restart the first position counts as moved."""
        position = reported_position(health)
        if position is None:
            return False
        where = (position["lat"], position["lon"])
        if self._positions.get(target_id) == where:
            return False
        self._positions[target_id] = where
        return True

    def forget(self, target_id: str) -> None:
        """The target was deleted: drop what is kept about it."""
        self._last.pop(target_id, None)
        self._positions.pop(target_id, None)

    async def series(self, target_id: str, *, since_ms: int) -> list[HealthSample]:
        """The target's samples since ``since_ms`` (not before the kept window), oldest
        first, at most :data:`MAX_POINTS` (the newest)."""
        oldest = self._clock() - self._keep_ms
        return await self._storage.health_samples(
            target_id, since=max(since_ms, oldest), limit=MAX_POINTS
        )

    async def purge(self) -> None:
        """Drop samples older than the kept window (a background job)."""
        deleted = await self._storage.purge_health_samples(older_than=self._clock() - self._keep_ms)
        if deleted:
            log.info("health history: %d old sample(s) deleted", deleted)


def reported_position(health: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The position the device reported in its last health report (``--location gpsd``) as
    an API document (``lat``, ``lon``, ``altM``, ``errorM``, ``at`` in ms, ``source``), or
    ``None``. Reports are validated on the wire; this only guards stored documents."""
    found = health.get("position") if health is not None else None
    if not isinstance(found, Mapping):
        return None

    def number(key: str) -> float | None:
        value = found.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    lat, lon = number("lat"), number("lon")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    source = found.get("source")
    return {
        "lat": lat,
        "lon": lon,
        "altM": number("alt_m"),
        "errorM": number("error_m"),
        "at": int(number("at_ms") or 0),
        "source": source[:64] if isinstance(source, str) else "gpsd",  # the wire default
    }
