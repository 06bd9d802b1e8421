"""A device's position from gpsd (``--location gpsd:HOST:PORT``) reaches the target document
and follows the device; a manual location set by an operator wins until it is cleared.

Real parts: Debian's gpsd run by ``gpsfake`` replaying a recorded NMEA track (a sentence
pair per position, 185 m apart), a real manager and a real agent process on loopback. The
test is skipped where gpsfake is not installed unless ``SWARMDEPLOY_REQUIRE_GPSD=1`` (CI)."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from swarmdeploy.localfleet import LocalFleet, free_port, wait_for

GPSFAKE = shutil.which("gpsfake")
pytestmark = pytest.mark.skipif(
    GPSFAKE is None and os.environ.get("SWARMDEPLOY_REQUIRE_GPSD") != "1",
    reason="gpsfake (Debian package gpsd-clients) is not installed",
)

#: The track starts at 48°07.038' N 11°31.000' E and goes north a tenth of a minute a step.
START_LAT = 48 + 7.038 / 60


def sentence(body: str) -> str:
    """An NMEA sentence with its checksum."""
    checksum = 0
    for byte in body.encode():
        checksum ^= byte
    return f"${body}*{checksum:02X}"


def track(path: pathlib.Path, steps: int) -> None:
    """Write an NMEA log of ``steps`` fixes (RMC + GGA each), one second apart."""
    lines = []
    for i in range(steps):
        lat = f"{4807.038 + i * 0.1:09.4f}"
        when = f"1200{i:02d}.00"
        lines.append(sentence(f"GPRMC,{when},A,{lat},N,01131.0000,E,0.0,0.0,051226,,,A"))
        lines.append(sentence(f"GPGGA,{when},{lat},N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,"))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def gpsd(tmp_path: pathlib.Path) -> Iterator[int]:
    """gpsd on a loopback port, fed by gpsfake from the track (looping); yields the port."""
    assert GPSFAKE is not None, "gpsfake is required (SWARMDEPLOY_REQUIRE_GPSD=1)"
    log = tmp_path / "track.nmea"
    track(log, 40)
    port = free_port()
    out = (tmp_path / "gpsfake.log").open("wb")
    proc = subprocess.Popen(
        [GPSFAKE, "-q", "-c", "0.5", "-P", str(port), str(log)],
        stdout=out,
        stderr=out,
        start_new_session=True,  # gpsfake runs gpsd as its child: stop the whole group
    )
    out.close()

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout_s=20, what="gpsd listening")
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_gpsd_position_follows_the_device_and_a_manual_location_wins(
    fleet: LocalFleet, gpsd: int
) -> None:
    [token] = fleet.tokens("gps", 1)
    # Health reports every 120 s: positions arriving sooner prove that a move sends one.
    args = ["--location", f"gpsd:127.0.0.1:{gpsd}", "--health-interval-s", "120"]
    fleet.start_agent("rover", token=token, extra_args=args)
    fleet.wait_online(["rover"])

    def reported() -> dict[str, object] | None:
        doc = fleet.target("rover")
        return doc if doc["locationSource"] == "device" else None

    first = wait_for(reported, timeout_s=30, what="a position from gpsd")
    assert first["location"] is not None and first["reportedLocation"] is not None
    lat0 = first["location"]["lat"]  # type: ignore[index]
    assert START_LAT - 1e-6 <= lat0 < START_LAT + 0.1
    report = first["reportedLocation"]
    assert report["source"] == "gpsd" and report["at"] > 0  # type: ignore[index]
    assert report["lon"] == pytest.approx(11 + 31 / 60)  # type: ignore[index]

    def moved() -> dict[str, object] | None:
        doc = fleet.target("rover")
        loc = doc["location"]
        return doc if loc is not None and abs(loc["lat"] - lat0) > 0.0005 else None

    wait_for(moved, timeout_s=60, what="a newer position after the device moved")

    manual = {"lat": 52.5, "lon": 13.4}
    fleet.api.request("PUT", "/targets/rover", json={"location": manual})
    doc = fleet.target("rover")
    assert (doc["location"], doc["locationSource"]) == (manual, "manual")
    assert doc["reportedLocation"] is not None  # still shown, but the operator's wins

    fleet.api.request("PUT", "/targets/rover", json={"location": None})
    wait_for(reported, timeout_s=10, what="the device's position after clearing the manual one")
