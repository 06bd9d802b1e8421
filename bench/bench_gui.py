"""What the web GUI costs: manager memory with and without it, and the devices page at scale.

``python -m bench gui [--devices 1000] [--idle-s 5] [--out FILE]``

Three real ``swarmdeploy manager`` processes in turn (SQLite, loopback):

* ``--no-gui``: RSS and PSS after ``--idle-s`` seconds idle (the API only);
* with the GUI: the same, idle, nobody signed in;
* with the GUI and ``--devices`` registered devices (each given a location): Debian's
  Chromium (Playwright) signs in and opens the devices page; the time from submitting the
  sign-in form until the page shows every device; the time from typing a filter until one
  row is left; the time from opening the map until its markers are drawn; and the
  manager's RSS after ``--idle-s`` seconds with the map open.

Saved to ``bench/results/gui.json``. Targets (issue 11): manager with the GUI idle <= 130 MB;
devices page and map with 1,000 devices rendered and filtered in under 2 s each.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tests.cli.manager_proc import free_port, running_manager
from tests.gui.conftest import CHROMIUM, CHROMIUM_ARGS, register_fleet

RESULTS = Path(__file__).parent / "results" / "gui.json"


def _memory(base: str) -> dict[str, float]:
    port = int(base.rsplit(":", 1)[1])
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "manager" in cmdline and str(port) in cmdline:
            smaps = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
            pss_kb = int(re.search(r"^Pss:\s+(\d+)", smaps, re.M).group(1))  # type: ignore[union-attr]
            return {"rss_mb": proc.memory_info().rss / 2**20, "pss_mb": pss_kb / 1024}
    raise RuntimeError(f"no manager process on port {port}")


def _ports() -> list[str]:
    return ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]


def _idle(root: Path, idle_s: float, *args: str) -> dict[str, float]:
    with running_manager(root, *args, *_ports()) as (base, _):
        time.sleep(idle_s)  # a benchmark: idle on purpose, then read the memory
        return _memory(base)


def _devices_page(root: Path, devices: int, idle_s: float) -> dict[str, Any]:
    from playwright.sync_api import expect, sync_playwright

    limits = ["--registration-burst", str(devices + 10), "--registration-rate", "10000"]
    limits += ["--registration-global-rate", "100000"]
    with running_manager(root, *limits, *_ports()) as (base, key):
        ids = register_fleet(base, key, devices, "bench")
        _locate(base, key, ids)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page()
            page.goto(f"{base}/ui/signin")
            page.get_by_test_id("api-key").fill(key)
            started = time.monotonic()
            page.get_by_test_id("signin").click()
            expect(page.get_by_test_id("device-summary")).to_have_text(
                f"{devices} devices, 0 online", timeout=60_000
            )
            shown_s = time.monotonic() - started
            wanted = ids[len(ids) // 2]
            started = time.monotonic()
            page.get_by_test_id("device-filter").fill(wanted)
            rows = page.get_by_test_id("device-table").locator("tbody.q-virtual-scroll__content tr")
            expect(rows).to_have_count(1, timeout=60_000)
            filter_s = time.monotonic() - started
            started = time.monotonic()
            page.goto(f"{base}/ui/map")
            expect(page.get_by_test_id("map-summary")).to_have_text(
                f"{devices} of {devices} devices have a location", timeout=60_000
            )
            page.locator('path[fill="#9ca3af"]').first.wait_for(timeout=60_000)
            map_s = time.monotonic() - started
            time.sleep(idle_s)  # a benchmark: the page stays open while we read the memory
            memory = _memory(base)
            browser.close()
    return {
        "devices": devices,
        "signin_to_devices_shown_s": shown_s,
        "devices_filter_to_one_row_s": filter_s,
        "map_open_to_markers_s": map_s,
        **memory,
    }


def _locate(base: str, key: str, ids: list[str]) -> None:
    """Spread the devices over five cities (a few km around each)."""
    import random

    import httpx

    cities = [(45.07, 7.68), (50.73, 7.10), (48.85, 2.35), (40.42, -3.70), (52.52, 13.40)]
    rng = random.Random(11)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        for i, target in enumerate(ids):
            lat, lon = cities[i % len(cities)]
            spot = {"lat": lat + rng.uniform(-0.2, 0.2), "lon": lon + rng.uniform(-0.2, 0.2)}
            http.put(f"/targets/{target}", json={"location": spot}).raise_for_status()


def main(argv: list[str]) -> int:
    """Run the benchmark; print and save the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench gui")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-gui-") as tmp:
        root = Path(tmp)
        results = {
            "machine": platform.machine(),
            "no_gui_idle": _idle(root / "a", args.idle_s, "--no-gui"),
            "gui_idle": _idle(root / "b", args.idle_s),
            "gui_devices_page": _devices_page(root / "c", args.devices, args.idle_s),
        }
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0
