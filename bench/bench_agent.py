"""Agent idle memory: RSS of a real ``swarmdeploy agent`` process connected over CurveZMQ.

``python -m bench agent [--idle-s 5] [--out FILE]``

A tiny manager runs in this process: the registration endpoint (``POST /rpc/targets`` on
127.0.0.1, a stub answering like the real manager) and the manager side of the CurveZMQ
transport with the test-side protocol peer (``tests/agent/fake_manager.py``: ``welcome``,
acks). The agent registers, connects, sends ``hello``, and then idles (heartbeats and
health reports) for ``--idle-s`` seconds; VmRSS and PSS (``/proc/<pid>/smaps_rollup``) are
read then. Two figures: the first start (which registers over plain HTTP here and therefore
loads ``urllib``; registering with an ``https://`` manager also keeps OpenSSL, about 7 MB
more) and a restart of the registered agent (the steady state of a device).
Target (issue 3): under 30 MB with the ZeroMQ transport.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.agent.fake_manager import FakeManager
from tests.agent.registration_server import (
    Script,
    new_ca,
    registration_answer,
    registration_server,
)

from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.transport.base import ManagerLinkConfig
from swarmdeploy.transport.zmq import ZmqManagerTransport

RESULTS = Path(__file__).parent / "results" / "agent.json"
TARGET = "bench-agent"
TARGET_MB = 30.0


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (also in MiB), VmHWM (peak) and PSS of ``pid`` in MB (10^6 bytes)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()

    def kb(pattern: str, text: str) -> float:
        match = re.search(pattern + r":\s+(\d+) kB", text)
        return int(match.group(1)) * 1024 / 1e6 if match else 0.0

    rss = kb("VmRSS", status)
    return {
        "rss_mb": round(rss, 1),
        "rss_mib": round(rss * 1e6 / (1 << 20), 1),
        "peak_rss_mb": round(kb("VmHWM", status), 1),
        "pss_mb": round(kb("Pss", rollup), 1),
    }


async def _wait(predicate: object, timeout_s: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not get there in time")
        await asyncio.sleep(0.05)


def _env(data_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMDEPLOY_")}
    env.update(
        {
            "SWARMDEPLOY_AGENT_DATA_DIR": str(data_dir),
            "SWARMDEPLOY_AGENT_MANAGER": url,
            "SWARMDEPLOY_AGENT_TOKEN": "abcd-efgh-ijkl",
            "SWARMDEPLOY_AGENT_ID": TARGET,
            "SWARMDEPLOY_AGENT_HEALTH_INTERVAL_S": "1",
            "SWARMDEPLOY_AGENT_RECONNECT_IVL_MAX_S": "0.5",
            "SWARMDEPLOY_AGENT_LOG_LEVEL": "WARNING",
        }
    )
    return env


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "swarmdeploy.entry", "agent"], env=env, stderr=err
        )


async def _measure(
    manager: FakeManager, env: dict[str, str], idle_s: float, log: Path
) -> dict[str, float]:
    hellos = len(manager.hellos)
    proc = _spawn(env, log)
    try:
        await _wait(lambda: len(manager.hellos) > hellos, 30)
        await asyncio.sleep(idle_s)
        figures = memory_mb(proc.pid)
        figures["health_reports"] = float(len(manager.health))
    finally:
        proc.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(proc.wait, 20)
    if status != 0:
        raise RuntimeError(f"the agent exited with {status}; see {log}")
    return figures


async def run(idle_s: float) -> dict[str, object]:
    """Start the tiny manager, measure a first start and a restart; return the figures."""
    keys = generate_keypair()
    transport = ZmqManagerTransport(ManagerLinkConfig(keys=keys, zmq_sub_port=0, zmq_pub_port=0))
    await transport.start()
    manager = FakeManager(transport)
    await manager.start()
    try:
        answer = registration_answer(TARGET, keys.public, new_ca(), transport.ports)
        script = Script([(201, {}, answer)])
        with tempfile.TemporaryDirectory() as tmp, registration_server(script) as url:
            env = _env(Path(tmp) / "agent", url)
            log = Path(tmp) / "agent.log"
            allow = asyncio.create_task(_allow_after_registration(transport, script))
            first = await _measure(manager, env, idle_s, log)
            await allow
            restart = await _measure(manager, env, idle_s, log)
    finally:
        await manager.close()
    return {"first_start_with_registration": first, "registered_restart": restart}


async def _allow_after_registration(transport: ZmqManagerTransport, script: Script) -> None:
    await _wait(lambda: bool(script.requests), 30)
    await transport.allow(TARGET, script.requests[0].body["publicKey"])


def main(argv: list[str]) -> int:
    """Run the benchmark, print the figures and write them to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench agent")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.idle_s))
    steady = figures["registered_restart"]
    assert isinstance(steady, dict)
    document = {
        "benchmark": "agent idle memory (ZeroMQ transport)",
        "idle_s": args.idle_s,
        "target_rss_mb": TARGET_MB,
        "meets_target": steady["rss_mb"] < TARGET_MB,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    for name, values in figures.items():
        assert isinstance(values, dict)
        print(
            f"{name:32s} RSS {values['rss_mb']:5.1f} MB ({values['rss_mib']:.1f} MiB)"
            f"  PSS {values['pss_mb']:5.1f} MB"
            f"  peak {values['peak_rss_mb']:5.1f} MB"
        )
    print(f"target: RSS < {TARGET_MB:.0f} MB -> {'met' if document['meets_target'] else 'NOT met'}")
    return 0
