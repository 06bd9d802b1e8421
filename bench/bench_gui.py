"""What the web GUI costs: manager memory with and without it, and the devices page at scale.

``python -m bench gui [--devices 1000] [--idle-s 5] [--out FILE]``

Three real ``swarmdeploy manager`` processes in turn (SQLite, loopback):

* ``--no-gui``: RSS and PSS after ``--idle-s`` seconds idle (the API only);
* with the GUI: the same, idle, nobody signed in;
* with the GUI and ``--devices`` registered devices: Debian's Chromium (Playwright) signs in
  and opens the devices page; the time from submitting the sign-in form until the page shows
  every device, and the manager's RSS after ``--idle-s`` seconds with the page open.

Saved to ``bench/results/gui.json``. Target (issue 11): manager with the GUI idle <= 130 MB.
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
        register_fleet(base, key, devices, "bench")
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
            time.sleep(idle_s)  # a benchmark: the page stays open while we read the memory
            memory = _memory(base)
            browser.close()
    return {"devices": devices, "signin_to_devices_shown_s": shown_s, **memory}


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
