"""``python -m bench agent_transports``: idle agent memory, ZeroMQ vs HTTP polling.

A real manager process and one real agent process per transport (registered, connected,
idle for ``--idle-s``), as :class:`~swarmdeploy.localfleet.LocalFleet` starts them; RSS and
PSS are read from ``/proc``. Saved to ``bench/results/agent_transports.json``. The target is
the agent's budget of ADR 0006 (30 MB resident).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from pathlib import Path

import psutil

from swarmdeploy.localfleet import LocalFleet

RESULTS = Path(__file__).parent / "results" / "agent_transports.json"


def _memory_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()

    def kb(pattern: str, text: str) -> float:
        found = re.search(pattern + r":\s+(\d+) kB", text)
        return int(found.group(1)) / 1000 if found else 0.0

    return {
        "rss_mb": round(kb("VmRSS", status), 1),
        "peak_rss_mb": round(kb("VmHWM", status), 1),
        "pss_mb": round(kb("Pss", rollup), 1),
    }


def measure(idle_s: float) -> dict[str, dict[str, float]]:
    """Start a manager and one agent per transport; their memory after ``idle_s``."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalFleet(Path(tmp)) as fleet:
        fleet.start_manager()
        tokens = fleet.tokens("bench", 2)
        for transport, token in zip(("zmq", "http"), tokens, strict=True):
            fleet.start_agent(f"{transport}-1", token=token,
                              extra_args=["--transport", transport, "--insecure-lab"])  # fmt: skip
        fleet.wait_online(["zmq-1", "http-1"])
        time.sleep(idle_s)
        for transport in ("zmq", "http"):
            proc = fleet.agents[f"{transport}-1"]
            figures = _memory_mb(proc.pid)
            figures["cpu_s"] = round(sum(psutil.Process(proc.pid).cpu_times()[:2]), 2)
            results[transport] = figures
    return results


def main(argv: list[str]) -> int:
    """Run and save (``--out``)."""
    parser = argparse.ArgumentParser(prog="python -m bench agent_transports")
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = measure(args.idle_s)
    document = {
        "benchmark": "agent idle memory by transport (real manager and agent processes)",
        "idle_s": args.idle_s,
        "target_rss_mb": 30.0,
        "meets_target": all(r["rss_mb"] < 30.0 for r in results.values()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 0
