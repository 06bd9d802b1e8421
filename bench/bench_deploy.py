"""Fleet deployment time and memory with real processes on loopback.

``python -m bench deploy [--agents 20] [--size-mb 1] [--out FILE]``

Starts a manager (SQLite) and N agents as real processes (``swarmdeploy.localfleet``), waits
until all are online, then measures:

* ``deploy_s``: from ``POST /tasks`` of a package with an incompressible payload of the given
  size until every agent reports ``exited`` (announce, accept, chunked pull, SHA-256 check,
  unpack, install, run);
* idle RSS of every agent (after the deployment and 5 s idle) and of the manager.

Results are printed and saved to ``bench/results/deploy.json``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import psutil

from swarmdeploy.localfleet import LocalFleet

RESULTS = Path(__file__).parent / "results" / "deploy.json"


def _package(size_bytes: int) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("payload.bin", os.urandom(size_bytes))
        zf.writestr("run.sh", "#!/bin/sh\nwc -c payload.bin\n")
    return base64.b64encode(buf.getvalue()).decode()


def _rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 1e6, 1)


def run(agents: int, size_mb: float) -> dict[str, object]:
    """Run the benchmark once and return the figures."""
    manager_args = ["--registration-rate", "6000"]  # every agent registers from 127.0.0.1
    with (
        tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp,
        LocalFleet(Path(tmp), manager_args=manager_args) as fleet,
    ):
        fleet.start_manager()
        ids = [f"bench-{i:03d}" for i in range(agents)]
        t0 = time.monotonic()
        for agent_id, token in zip(ids, fleet.tokens("bench", agents), strict=True):
            fleet.start_agent(agent_id, token=token, tags=["bench"])
        fleet.wait_online(ids, timeout_s=120)
        online_s = time.monotonic() - t0
        descriptor = {
            "source": {"zip": _package(int(size_mb * 1e6))},
            "deploy": {"run": {"commands": ["sh run.sh"]}, "target": {"tags": ["bench"]}},
        }
        t1 = time.monotonic()
        task = fleet.api.request("POST", "/tasks", json=descriptor)
        fleet.wait_states(task["id"], dict.fromkeys(ids, "exited"), timeout_s=300)
        deploy_s = time.monotonic() - t1
        time.sleep(5)  # idle period before reading memory (a measurement, not a wait)
        agent_rss = [_rss_mb(fleet.agents[a].pid) for a in ids]
        manager_rss = _rss_mb(fleet.manager.pid) if fleet.manager else 0.0
    return {
        "agents": agents,
        "payload_mb": size_mb,
        "all_online_s": round(online_s, 2),
        "deploy_s": round(deploy_s, 2),
        "agent_idle_rss_mb": {
            "median": statistics.median(agent_rss),
            "max": max(agent_rss),
        },
        "manager_rss_mb": manager_rss,
    }


def main(argv: list[str]) -> int:
    """Entry point for ``python -m bench deploy``."""
    parser = argparse.ArgumentParser(prog="python -m bench deploy", description=__doc__)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    figures = run(args.agents, args.size_mb)
    doc = {
        "benchmark": "deploy a package to local agents (real processes, CurveZMQ, SQLite)",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "results": figures,
    }
    print(json.dumps(doc, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
