"""Positions from gpsd (seed 003: "Device location is ... produced by external positioning
sources on the device"), for ``swarmdeploy agent --location gpsd[:HOST:PORT]``.

:class:`GpsdTracker` keeps a connection to gpsd's JSON socket (default ``127.0.0.1:2947``),
asks it to stream reports (``?WATCH={"enable":true,"json":true}``) and turns every ``TPV``
report with a 2D or 3D fix into a :class:`~swarmdeploy.protocol.messages.Position`
(:func:`fix_from_tpv`). :class:`Throttle` decides which fixes are *reported*: the first one,
one that moved more than ``min_move_m`` from the last reported, and otherwise one every
``interval_s``, but never two within ``min_gap_s``. A reported fix replaces
:attr:`GpsdTracker.reported` (carried by every ``health`` report) and calls ``on_report``,
which makes the health loop send a report now, so the map follows a moving device within
seconds without a report per fix. gpsd going away is logged once and retried with backoff;
the last reported fix stays (its ``at_ms`` tells its age).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from swarmdeploy.agent.backoff import Backoff
from swarmdeploy.agent.errors import ConfigError
from swarmdeploy.protocol.messages import Position

if TYPE_CHECKING:
    from swarmdeploy.agent.config import AgentSettings

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2947
#: Longest report line accepted from gpsd (its SKY reports with many satellites are a few KB).
MAX_LINE_BYTES = 64 * 1024
WATCH = b'?WATCH={"enable":true,"json":true}\n'
_EARTH_RADIUS_M = 6_371_008.8


def parse_gpsd(text: str) -> tuple[str, int] | None:
    """``gpsd`` or ``gpsd:HOST:PORT`` (``--location``) as (host, port); ``None`` when
    ``text`` names no gpsd source (it is then a manual ``LAT,LON``)."""
    if text != "gpsd" and not text.startswith("gpsd:"):
        return None
    if text == "gpsd":
        return DEFAULT_HOST, DEFAULT_PORT
    host, sep, port = text[len("gpsd:") :].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--location {text!r}: write gpsd or gpsd:HOST:PORT (e.g. gpsd:127.0.0.1:2947)"
        )
    return host, int(port)


def fix_from_tpv(report: dict[str, Any], now_ms: int) -> Position | None:
    """The position in a gpsd ``TPV`` report, or ``None`` for other reports and for TPVs
    without a 2D/3D fix. The horizontal error is ``eph`` or else the larger of
    ``epx``/``epy`` (metres); the altitude is ``altHAE`` or else ``alt``."""
    if report.get("class") != "TPV" or not isinstance(report.get("mode"), int):
        return None
    lat, lon = _float(report.get("lat")), _float(report.get("lon"))
    if report["mode"] < 2 or lat is None or lon is None:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    alt = next((v for k in ("altHAE", "alt") if (v := _float(report.get(k))) is not None), None)
    errors = [v for k in ("epx", "epy") if (v := _float(report.get(k))) is not None]
    error = _float(report.get("eph"))
    error = error if error is not None else max(errors, default=None)
    return Position(
        lat=lat,
        lon=lon,
        alt_m=alt if alt is not None and -1e5 <= alt <= 1e6 else None,
        error_m=error if error is not None and 0 <= error <= 1e7 else None,
        at_ms=max(now_ms, 0),
        source="gpsd",
    )


def _float(value: Any) -> float | None:
    """A finite JSON number as a float, else ``None``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def distance_m(a: Position, b: Position) -> float:
    """Great-circle distance between two fixes in metres (haversine)."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlmb = phi2 - phi1, math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class Throttle:
    """Which fixes are reported (see the module docstring). No I/O, no clock: callers pass
    ``now_s`` (monotonic seconds)."""

    def __init__(self, *, min_move_m: float, interval_s: float, min_gap_s: float = 5.0) -> None:
        self.min_move_m = min_move_m
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self._last: Position | None = None
        self._last_s = 0.0

    def due(self, fix: Position, now_s: float) -> bool:
        """Whether ``fix`` should be reported at ``now_s``; if so it becomes the last one."""
        if self._last is not None:
            waited = now_s - self._last_s
            moved = distance_m(self._last, fix) > self.min_move_m
            if waited < self.min_gap_s or not (moved or waited >= self.interval_s):
                return False
        self._last, self._last_s = fix, now_s
        return True


class GpsdTracker:
    """Follows gpsd and keeps the last reported fix (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        throttle: Throttle,
        *,
        on_report: Callable[[], None] = lambda: None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
        retry_s: float = 2.0,
    ) -> None:
        self._host, self._port = host, port
        self._throttle = throttle
        self._on_report = on_report
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._backoff = Backoff(retry_s)
        self.reported: Position | None = None
        self.connected = False

    async def run(self) -> None:
        """Connect, follow, reconnect after a failure; forever (cancel to stop)."""
        failing = False
        while True:
            try:
                await self._follow()
                reason = "closed the connection"
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
            if self.connected:  # it worked until now: say so again when it fails
                failing = False
            self.connected = False
            if not failing:
                logger.warning("gpsd at %s:%d: %s; retrying", self._host, self._port, reason)
            failing = True
            self._backoff.sent(self._monotonic())
            await asyncio.sleep(self._backoff.wait_s)

    async def _follow(self) -> None:
        reader, writer = await asyncio.open_connection(self._host, self._port, limit=MAX_LINE_BYTES)
        try:
            writer.write(WATCH)
            await writer.drain()
            first = True
            while line := await reader.readline():
                if first:
                    logger.info("following gpsd at %s:%d", self._host, self._port)
                    self.connected, first = True, False
                    self._backoff.reset()
                self.feed(line)
        finally:
            writer.close()

    def feed(self, line: bytes) -> bool:
        """Handle one report line from gpsd; whether it produced a reported fix."""
        try:
            report = json.loads(line)
        except ValueError:
            return False
        if not isinstance(report, dict):
            return False
        fix = fix_from_tpv(report, self._clock_ms())
        if fix is None or not self._throttle.due(fix, self._monotonic()):
            return False
        self.reported = fix
        self._on_report()
        return True


def gps_tracker(settings: AgentSettings, on_report: Callable[[], None]) -> GpsdTracker | None:
    """The tracker ``--location gpsd...`` asks for (``None`` without one)."""
    if settings.gpsd is None:
        return None
    throttle = Throttle(min_move_m=settings.gps_min_move_m, interval_s=settings.gps_interval_s)
    return GpsdTracker(*settings.gpsd, throttle, on_report=on_report)
