"""Bytes on the agent link for a log-heavy deployment, with and without compression.

``python -m bench wire [--agents 5] [--lines 20000] [--out FILE]``

For each of ``--wire-compression off`` and ``on``: a manager (SQLite) and N agents as real
processes on loopback (``swarmdeploy.localfleet``); one task with ``debug: true`` whose run
command prints ``--lines`` lines of build-like output on every agent. From ``POST /tasks``
until every line is stored, the manager's ``swarmdeploy_link_wire_bytes_total`` counters
(``/metrics``) give the bytes agents sent and received (MessagePack frames before CURVE,
compressed envelopes at their compressed size), and afterwards the agents' RSS is read.
Results are printed and saved to ``bench/results/wire.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from swarmdeploy.localfleet import LocalFleet, wait_for

RESULTS = Path(__file__).parent / "results" / "wire.json"
FAST = ["--log-batch-s", "0.5", "--resend-s", "5"]


def _wire_bytes(fleet: LocalFleet) -> dict[str, float]:
    text = httpx.get(
        f"{fleet.url}/metrics", headers={"Authorization": f"Bearer {fleet.admin_key}"}
    ).text
    found = re.findall(
        r'^swarmdeploy_link_wire_bytes_total\{direction="(\w+)"\} (\S+)$', text, re.M
    )
    return {direction: float(value) for direction, value in found}


def _stored_lines(fleet: LocalFleet, task_id: str) -> int:
    page = fleet.api.request("GET", "/logs", params={"task": task_id, "perPage": 1})
    return int(page["total"])


def run_once(agents: int, lines: int, compression: str) -> dict[str, object]:
    """One deployment with ``--wire-compression compression``; returns its figures."""
    manager_args = ["--registration-rate", "6000", "--wire-compression", compression]
    with (
        tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp,
        LocalFleet(Path(tmp), manager_args=manager_args, agent_args=FAST) as fleet,
    ):
        fleet.start_manager()
        ids = [f"wire-{i:02d}" for i in range(agents)]
        for agent_id, token in zip(ids, fleet.tokens("wire", agents), strict=True):
            fleet.start_agent(agent_id, token=token, tags=["wire"])
        fleet.wait_online(ids, timeout_s=120)
        script = (
            f"i=0; while [ $i -lt {lines} ]; do i=$((i+1)); m=$((i % 37));"
            " h=$(( (i * 2654435761) % 4294967291 ));"  # a varying number, as real output has
            ' echo "[build] step $i: cc -c src/module_$m.c -o obj/module_$m.o (crc $h) ok";'
            " done"
        )
        descriptor = {
            "debug": True,
            "deploy": {"run": {"commands": [script]}, "target": {"tags": ["wire"]}},
        }
        before = _wire_bytes(fleet)
        t0 = time.monotonic()
        task = fleet.api.request("POST", "/tasks", json=descriptor)
        fleet.wait_states(task["id"], dict.fromkeys(ids, "exited"), timeout_s=300)
        expected = agents * lines

        def all_stored() -> bool:
            return _stored_lines(fleet, task["id"]) >= expected

        wait_for(all_stored, timeout_s=300, what=f"{expected} log lines stored", interval_s=0.5)
        elapsed = time.monotonic() - t0
        after = _wire_bytes(fleet)
        rss = [psutil.Process(fleet.agents[a].pid).memory_info().rss / 1e6 for a in ids]
    received = after.get("in", 0.0) - before.get("in", 0.0)
    sent = after.get("out", 0.0) - before.get("out", 0.0)
    return {
        "wire_compression": compression,
        "lines_stored": expected,
        "bytes_from_agents": int(received),
        "bytes_to_agents": int(sent),
        "bytes_per_line_from_agents": round(received / expected, 1),
        "deploy_and_logs_s": round(elapsed, 2),
        "agent_rss_mb": {"median": round(statistics.median(rss), 1), "max": round(max(rss), 1)},
    }


def main(argv: list[str]) -> int:
    """Entry point for ``python -m bench wire``."""
    parser = argparse.ArgumentParser(prog="python -m bench wire", description=__doc__)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    off = run_once(args.agents, args.lines, "off")
    on = run_once(args.agents, args.lines, "on")
    ratio = int(off["bytes_from_agents"]) / max(1, int(on["bytes_from_agents"]))  # type: ignore[call-overload]
    doc = {
        "benchmark": "agent link bytes for a log-heavy deployment, compression off vs on",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
        "agents": args.agents,
        "lines_per_agent": args.lines,
        "results": {"off": off, "on": on, "bytes_from_agents_ratio_off_to_on": round(ratio, 2)},
    }
    print(json.dumps(doc, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
