"""Positions from gpsd: parsing ``--location``, gpsd's TPV reports, the report throttle and
the tracker's line handling (pure logic; the real gpsd is in tests/e2e/test_gpsd_position.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import ConfigError
from swarmdeploy.agent.gpsd import (
    GpsdTracker,
    Throttle,
    distance_m,
    fix_from_tpv,
    gps_tracker,
    parse_gpsd,
)
from swarmdeploy.agent.main import build_parser, settings_from_args
from swarmdeploy.protocol.messages import Health, Position, decode, encode

TPV = {"class": "TPV", "mode": 3, "lat": 48.1173, "lon": 11.5167, "altHAE": 592.3, "eph": 17.1}


def at(lat: float, lon: float) -> Position:
    return Position(lat=lat, lon=lon)


def test_parse_gpsd_sources() -> None:
    assert parse_gpsd("gpsd") == ("127.0.0.1", 2947)
    assert parse_gpsd("gpsd:10.0.0.5:3000") == ("10.0.0.5", 3000)
    assert parse_gpsd("gpsd:[::1]:2947") == ("::1", 2947)
    assert parse_gpsd("48.1,11.5") is None
    for bad in ("gpsd:", "gpsd:host", "gpsd:host:0", "gpsd:host:x", "gpsd::2947"):
        with pytest.raises(ConfigError, match="gpsd:HOST:PORT"):
            parse_gpsd(bad)


def test_location_option_selects_manual_or_gpsd() -> None:
    def settings(location: str) -> AgentSettings:
        args = build_parser({}).parse_args(["--data-dir", "/tmp/x", "--location", location])
        return settings_from_args(args)

    manual = settings("48.5,11.25")
    assert manual.location == (48.5, 11.25) and manual.gpsd is None
    gps = settings("gpsd:127.0.0.1:4000")
    assert gps.gpsd == ("127.0.0.1", 4000) and gps.location is None
    with pytest.raises(ConfigError, match="LAT,LON"):
        settings("north")


def test_gps_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="--gps-min-move-m"):
        AgentSettings(data_dir=Path("/tmp/x"), gps_min_move_m=-1)
    with pytest.raises(ConfigError, match="--gps-interval-s"):
        AgentSettings(data_dir=Path("/tmp/x"), gps_interval_s=0)


def test_fix_from_tpv_reads_position_altitude_and_error() -> None:
    fix = fix_from_tpv(TPV, 1234)
    assert fix is not None
    assert (fix.lat, fix.lon, fix.alt_m, fix.error_m) == (48.1173, 11.5167, 592.3, 17.1)
    assert (fix.at_ms, fix.source) == (1234, "gpsd")
    # no eph: the larger of epx/epy; no altHAE: alt
    other = fix_from_tpv({**TPV, "eph": None, "epx": 3.0, "epy": 4.5, "altHAE": None, "alt": 9}, 0)
    assert other is not None and (other.error_m, other.alt_m) == (4.5, 9.0)


@pytest.mark.parametrize(
    "report",
    [
        {**TPV, "mode": 1},  # no fix
        {**TPV, "class": "SKY"},
        {k: v for k, v in TPV.items() if k != "lat"},
        {**TPV, "lat": "48.1"},
        {**TPV, "lat": True},
        {**TPV, "lat": 91.0},
        {**TPV, "lon": float("nan")},
        {**TPV, "mode": "3"},
    ],
)
def test_fix_from_tpv_ignores_reports_without_a_usable_fix(report: dict[str, object]) -> None:
    assert fix_from_tpv(report, 0) is None


def test_distance_is_great_circle_metres() -> None:
    # one minute of latitude is about 1,852 m
    assert distance_m(at(48.0, 11.0), at(48.0 + 1 / 60, 11.0)) == pytest.approx(1853, abs=3)
    assert distance_m(at(10.0, 20.0), at(10.0, 20.0)) == 0.0


def test_throttle_reports_first_moves_and_a_periodic_fix() -> None:
    throttle = Throttle(min_move_m=25, interval_s=300, min_gap_s=5)
    home, near, far = at(48.0, 11.0), at(48.0001, 11.0), at(48.001, 11.0)  # 11 m, 111 m
    assert throttle.due(home, 0.0)  # the first fix
    assert not throttle.due(near, 10.0)  # moved too little
    assert not throttle.due(far, 3.0)  # moved, but within the minimum gap
    assert throttle.due(far, 10.0)  # moved far enough
    assert not throttle.due(far, 200.0)  # standing still
    assert throttle.due(far, 311.0)  # standing still, but the interval is over


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_tracker_feeds_lines_and_calls_back_on_reported_fixes() -> None:
    reports: list[Position | None] = []
    clock = Clock()
    tracker = GpsdTracker(
        "127.0.0.1",
        2947,
        Throttle(min_move_m=25, interval_s=300, min_gap_s=5),
        on_report=lambda: reports.append(tracker.reported),
        clock_ms=lambda: 42,
        monotonic=clock,
    )
    assert not tracker.feed(b'{"class":"VERSION","release":"3.22"}\n')
    assert not tracker.feed(b"not json\n")
    assert not tracker.feed(b"[1, 2]\n")
    assert tracker.feed(json.dumps(TPV).encode())
    clock.now = 6.0
    assert not tracker.feed(json.dumps(TPV).encode())  # same place
    assert tracker.feed(json.dumps({**TPV, "lat": 48.2}).encode())
    assert [(p.lat, p.at_ms) for p in reports if p] == [(48.1173, 42), (48.2, 42)]
    assert tracker.reported is not None and tracker.reported.lat == 48.2


def test_gps_tracker_only_with_a_gpsd_source() -> None:
    assert gps_tracker(AgentSettings(data_dir=Path("/tmp/x")), lambda: None) is None
    tracker = gps_tracker(AgentSettings(data_dir=Path("/tmp/x"), gpsd=("127.0.0.1", 1)), print)
    assert isinstance(tracker, GpsdTracker)


def test_health_report_carries_the_position_on_the_wire() -> None:
    report = Health(at_ms=1, position=Position(lat=1.5, lon=-2.5, error_m=3.0, at_ms=9))
    back = decode(encode(report))
    assert isinstance(back, Health) and back.position == report.position
    plain = decode(encode(Health(at_ms=1)))
    assert isinstance(plain, Health) and plain.position is None
