"""``python -m bench http_poll``: what an idle fleet of HTTP-polling agents costs the manager.

N simulated agents (real :class:`HttpAgentTransport` objects in this process, sealed
envelopes and all) long-poll the manager's HTTP link, which runs alone in its own process
(:mod:`bench.http_link_server`). Measured on that process: CPU seconds per wall second while
the fleet idles (polls only), requests per second, and its resident memory; and the round
trip of a message to an idle agent (agent ``heartbeat`` -> manager ``welcome`` through the
parked long-poll). Saved to ``bench/results/http_poll.json``.

What is *not* in the figure: the link server's handling of each agent's own ``heartbeat``
(every ``--heartbeat-s``, 15 s by default), which is the same over ZeroMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.protocol.messages import Heartbeat, Welcome
from swarmdeploy.transport.base import AgentLinkConfig, LinkState
from swarmdeploy.transport.http_agent import HttpAgentTransport

RESULTS = Path(__file__).parent / "results" / "http_poll.json"


def _start_server(
    workdir: Path, agents: dict[str, str], manager: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int]:
    keys = workdir / "keys.json"
    keys.write_text(json.dumps({"manager": manager, "agents": agents}))
    port_file = workdir / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.http_link_server", str(keys), str(port_file)],
        cwd=Path(__file__).parent.parent,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the link server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


async def _connect_all(agents: list[HttpAgentTransport], timeout_s: float) -> None:
    for agent in agents:
        await agent.connect()
    await asyncio.gather(*(a.wait_state(LinkState.CONNECTED, timeout_s=timeout_s) for a in agents))


async def _round_trip(agent: HttpAgentTransport, i: int) -> float:
    started = time.monotonic()
    assert await agent.send(Heartbeat(sent_at_ms=i))
    async with asyncio.timeout(30):
        while True:
            item = await agent.recv()
            if isinstance(item, Welcome) and item.server_time_ms == i:
                return time.monotonic() - started


async def run(count: int, idle_s: float, poll_wait_s: float) -> dict[str, object]:
    """Start the server, connect ``count`` agents, idle, measure; see the module docstring."""
    manager = generate_keypair()
    keys = {f"sim-{i:05d}": generate_keypair() for i in range(count)}
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = _start_server(
            Path(tmp),
            {k: v.public for k, v in keys.items()},
            {"public": manager.public, "secret": manager.secret},
        )
        agents = [
            HttpAgentTransport(
                AgentLinkConfig(
                    target_id=tid,
                    keys=pair,
                    manager_public_key=manager.public,
                    reconnect_ivl_s=1.0,
                    reconnect_ivl_max_s=10.0,
                ),
                manager_url=f"http://127.0.0.1:{port}",
                poll_wait_s=poll_wait_s,
            )
            for tid, pair in keys.items()
        ]
        try:
            started = time.monotonic()
            await _connect_all(agents, timeout_s=120)
            connect_s = time.monotonic() - started
            server = psutil.Process(proc.pid)
            await asyncio.sleep(min(poll_wait_s, 5.0))  # let the openings' work settle
            cpu0, t0 = sum(server.cpu_times()[:2]), time.monotonic()
            await asyncio.sleep(idle_s)
            cpu1, t1 = sum(server.cpu_times()[:2]), time.monotonic()
            trips = [await _round_trip(agents[i * (count // 20 or 1)], i) for i in range(20)]
            rss_mb = server.memory_info().rss / 1e6
        finally:
            for agent in agents:
                await agent.close()
            proc.terminate()
            proc.wait(20)
    polls_per_s = count / (poll_wait_s * 0.9)  # the agents wait 80-100 % of poll_wait_s
    return {
        "agents": count,
        "poll_wait_s": poll_wait_s,
        "idle_s": idle_s,
        "connect_all_s": round(connect_s, 2),
        "manager_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "manager_cpu_ms_per_poll": round(1000 * (cpu1 - cpu0) / (t1 - t0) / polls_per_s, 3),
        "polls_per_s": round(polls_per_s, 1),
        "manager_rss_mb": round(rss_mb, 1),
        "round_trip_median_ms": round(1000 * statistics.median(trips), 1),
        "round_trip_max_ms": round(1000 * max(trips), 1),
    }


def main(argv: list[str]) -> int:
    """Run the benchmark and save its JSON (``--out``)."""
    parser = argparse.ArgumentParser(prog="python -m bench http_poll")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--poll-wait-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.agents, args.idle_s, args.poll_wait_s))
    document = {
        "benchmark": "idle HTTP-polling fleet: manager link process cost",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 0
