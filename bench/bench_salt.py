"""Side by side with Salt: the same job on 10 devices, and what each side costs at rest.

``python -m bench salt [--devices 10] [--pairs 5] [--idle-s 60] [--cache DIR] [--out FILE]``

Everything runs on this machine on loopback, at the same time: a swarmdeploy manager with
``--devices`` real agent processes (``swarmdeploy.localfleet``: SQLite, signed tasks, CurveZMQ,
each agent verifying with the manager's CA) and a salt-master with as many salt-minions (Salt
3008.3 in a venv of its own, installed once below ``--cache``; ``bench/salt_peer.py``).

Each of ``--pairs`` rounds writes a fresh 1 MiB random file and runs, in alternating order:

* ``swarmdeploy``: ``POST /tasks`` with the file in a zip and ``sha256sum payload.bin`` as its
  run command, targeted by tag at every agent; timed until every target's ``exited`` is stored,
  followed on ``/events`` (``taskUpdated``) as the CLI follows a task, then checked once with
  ``GET /tasks/{id}``; the time at which every target was at least ``installed`` is recorded
  too (until issue 12's fifth round the bench polled ``GET /tasks/{id}`` every 20 ms, which
  cost the manager CPU on the same two cores);
* ``salt_cli``: ``salt '*' state.apply bench`` as a user types it (``file.managed`` of the
  file from ``salt://``, then ``cmd.run`` of ``sha256sum`` on it), whole command timed;
* ``salt_localclient``: the same ``state.apply`` through ``LocalClient`` in a warm Python
  process (without the ~0.7 s the ``salt`` command spends importing itself).

Every run is checked (every device holds the fresh file; Salt's states all succeeded and the
command printed its SHA-256) and the CPU seconds the server side (manager / master process
tree) and the device side (all agents / all minions) spent on it are recorded. Then, after
10 s of quiet, ``--idle-s`` seconds at rest: RSS, PSS and CPU of each agent vs each minion
(process trees) and of the manager vs the master. ``uptime`` before and after is saved with
the results in ``bench/results/salt.json``; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.salt_peer import SALT_VERSION, SaltError, SaltPeer, salt_venv, tree, verify_apply
from swarmdeploy import __version__
from swarmdeploy.client.stream import EventStream
from swarmdeploy.localfleet import FleetError, LocalFleet

RESULTS = Path(__file__).parent / "results" / "salt.json"
CACHE = Path(__file__).parent / ".cache"
TAG = "bench"
MB = 1e6
INSTALLED_OR_LATER = {"installed", "running", "exited"}
SIDES = ("swarmdeploy", "salt_cli", "salt_localclient")


def uptime() -> str:
    """The ``uptime`` line (the machine is shared: its load belongs with the numbers)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def tree_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the process trees of ``pids`` so far, including ended
    children they reaped (a minion's job processes, an agent's deployed commands)."""
    total = 0.0
    for pid in pids:
        for proc in tree(pid):
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_memory(pid: int) -> tuple[int, int, int]:
    """RSS and PSS bytes and the process count of the tree of ``pid``."""
    rss = pss = count = 0
    for proc in tree(pid):
        try:
            info = proc.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss, pss, count = rss + info.rss, pss + info.pss, count + 1
    return rss, pss, count


def zip_b64(data: bytes) -> str:
    """A stored zip holding ``payload.bin``, base64."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("payload.bin", data)
    return base64.b64encode(buf.getvalue()).decode()


class SideBySide:
    """The started swarmdeploy fleet and Salt peer, and the runs against both."""

    def __init__(
        self, fleet: LocalFleet, ids: list[str], peer: SaltPeer, events: EventStream
    ) -> None:
        self.fleet, self.ids, self.peer, self.events = fleet, ids, peer, events
        assert fleet.manager is not None
        self.manager_pid = fleet.manager.pid
        self.agent_pids = [fleet.agents[i].pid for i in ids]
        self.master_pid, self.minion_pids = peer.daemon_pids()

    def _timed(self, server: int, devices: list[int], run: Callable[[], dict[str, Any]]
               ) -> dict[str, Any]:  # fmt: skip
        cpu_server, cpu_devices = tree_cpu_s([server]), tree_cpu_s(devices)
        figures = run()
        figures["server_cpu_s"] = round(tree_cpu_s([server]) - cpu_server, 3)
        figures["devices_cpu_s"] = round(tree_cpu_s(devices) - cpu_devices, 3)
        return figures

    def swarmdeploy(self, data: bytes, sha256: str) -> dict[str, Any]:
        """One task: the file and ``sha256sum payload.bin`` on every agent."""
        return self._timed(self.manager_pid, self.agent_pids, lambda: self._task(data, sha256))

    def _task(self, data: bytes, sha256: str) -> dict[str, Any]:
        descriptor = {
            "source": {"zip": zip_b64(data)},
            "deploy": {"run": {"commands": ["sha256sum payload.bin"]}, "target": {"tags": [TAG]}},
        }
        t0 = time.perf_counter()
        task_id = self.fleet.api.request("POST", "/tasks", json=descriptor)["id"]
        post_s = time.perf_counter() - t0
        installed_s = 0.0
        states: dict[str, str] = {}
        while True:  # followed on /events, as the CLI does: no polling load on the manager
            for frame in self.events.frames(0.5):
                row = frame.get("payload", {})
                if frame.get("topic") == "taskUpdated" and row.get("task") == task_id:
                    states[row["id"]] = row["state"]
            elapsed = time.perf_counter() - t0
            if (
                not installed_s
                and len(states) == len(self.ids)
                and all(s in INSTALLED_OR_LATER for s in states.values())
            ):
                installed_s = elapsed
            if len(states) == len(self.ids) and all(s == "exited" for s in states.values()):
                break
            bad = {t: s for t, s in states.items() if s in ("declined", "install_failed", "failed")}
            if bad or elapsed > 120:
                raise FleetError(f"task {task_id} did not end exited: {states}")
        stored = self.fleet.states(task_id)
        if set(stored.values()) != {"exited"} or len(stored) != len(self.ids):
            raise FleetError(f"task {task_id}: the events said exited, the API says {stored}")
        missing = [i for i in self.ids if not self._holds(i, sha256)]
        if missing:
            raise FleetError(f"agents without the fresh file after {task_id}: {missing}")
        return {"wall_s": round(elapsed, 3), "installed_s": round(installed_s, 3),
                "post_s": round(post_s, 3), "task": task_id}  # fmt: skip

    def _holds(self, agent_id: str, sha256: str) -> bool:
        for path in self.fleet.agent_dir(agent_id).rglob("payload.bin"):
            if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
                return True
        return False

    def salt_cli(self, sha256: str) -> dict[str, Any]:
        """``salt '*' state.apply bench`` through the command line."""

        def run() -> dict[str, Any]:
            wall, out = self.peer.apply_cli()
            return self._checked(wall, out, sha256)

        return self._timed(self.master_pid, self.minion_pids, run)

    def salt_localclient(self, sha256: str) -> dict[str, Any]:
        """The same through the warm ``LocalClient``."""

        def run() -> dict[str, Any]:
            answer = self.peer.request("apply", timeout_s=120)
            if answer["error"]:
                raise SaltError(f"LocalClient state.apply failed: {answer['error']}")
            return self._checked(answer["s"], answer["ret"], sha256)

        return self._timed(self.master_pid, self.minion_pids, run)

    def _checked(self, wall: float, ret: dict[str, Any], sha256: str) -> dict[str, Any]:
        problems = verify_apply(ret, self.peer.ids, sha256)
        if problems:
            raise SaltError(f"state.apply did not do the job: {problems[:5]}")
        return {"wall_s": round(wall, 3)}

    def one(self, side: str, data: bytes, sha256: str) -> dict[str, Any]:
        """One run of ``side`` (one of :data:`SIDES`) with the file ``data``."""
        if side == "swarmdeploy":
            return self.swarmdeploy(data, sha256)
        if side == "salt_cli":
            return self.salt_cli(sha256)
        return self.salt_localclient(sha256)

    def pairs(self, count: int) -> list[dict[str, Any]]:
        """``count`` rounds, each with a fresh 1 MiB file; the order alternates."""
        rounds = []
        for i in range(count):
            data = os.urandom(1 << 20)
            sha256 = hashlib.sha256(data).hexdigest()
            self.peer.write_payload(data)
            order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
            done: dict[str, Any] = {"order": order, "load_1m": round(os.getloadavg()[0], 2)}
            for name in order:
                done[name] = self.one(name, data, sha256)
                print(f"salt: round {i + 1} {name}: {done[name]['wall_s']} s", flush=True)
            rounds.append(done)
        return rounds

    def idle(self, seconds: float) -> dict[str, Any]:
        """Memory and CPU of every side at rest over ``seconds``."""
        groups = {"agent": self.agent_pids, "minion": self.minion_pids,
                  "manager": [self.manager_pid], "master": [self.master_pid]}  # fmt: skip
        cpu0 = {name: tree_cpu_s(pids) for name, pids in groups.items()}
        time.sleep(seconds)
        out = {}
        for name, pids in groups.items():
            cpu = tree_cpu_s(pids) - cpu0[name]
            memory = [tree_memory(pid) for pid in pids]
            out[name] = {
                "units": len(pids),
                "processes_each": round(sum(m[2] for m in memory) / len(pids), 1),
                "rss_mb_each": round(sum(m[0] for m in memory) / len(pids) / MB, 1),
                "pss_mb_each": round(sum(m[1] for m in memory) / len(pids) / MB, 1),
                "cpu_percent_each": round(cpu / seconds / len(pids) * 100, 3),
                "rss_mb_all": round(sum(m[0] for m in memory) / MB, 1),
                "pss_mb_all": round(sum(m[1] for m in memory) / MB, 1),
            }
        return out


def summary(rounds: list[dict[str, Any]], idle: dict[str, Any]) -> dict[str, Any]:
    """Medians per side and the ratios Salt / swarmdeploy."""
    latency = {}

    def median(name: str, key: str) -> float:
        return round(float(statistics.median(r[name][key] for r in rounds)), 3)

    for name in SIDES:
        walls = [r[name]["wall_s"] for r in rounds]
        latency[name] = {
            "median_s": median(name, "wall_s"), "min_s": min(walls), "max_s": max(walls),
            "runs": len(walls), "server_cpu_s_median": median(name, "server_cpu_s"),
            "devices_cpu_s_median": median(name, "devices_cpu_s"),
        }  # fmt: skip
    sd = latency["swarmdeploy"]
    latency["swarmdeploy"]["installed_median_s"] = round(
        statistics.median(r["swarmdeploy"]["installed_s"] for r in rounds), 3
    )

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    a, mi, ma, me = idle["agent"], idle["minion"], idle["manager"], idle["master"]
    ratios = {
        "salt_cli_latency_over_swarmdeploy": ratio(latency["salt_cli"]["median_s"], sd["median_s"]),
        "salt_localclient_latency_over_swarmdeploy": ratio(
            latency["salt_localclient"]["median_s"], sd["median_s"]),
        "master_cpu_per_job_over_manager": ratio(
            latency["salt_localclient"]["server_cpu_s_median"], sd["server_cpu_s_median"]),
        "minion_rss_over_agent": ratio(mi["rss_mb_each"], a["rss_mb_each"]),
        "minion_pss_over_agent": ratio(mi["pss_mb_each"], a["pss_mb_each"]),
        "minion_idle_cpu_over_agent": ratio(mi["cpu_percent_each"], a["cpu_percent_each"]),
        "master_rss_over_manager": ratio(me["rss_mb_each"], ma["rss_mb_each"]),
        "master_pss_over_manager": ratio(me["pss_mb_each"], ma["pss_mb_each"]),
        "master_idle_cpu_over_manager": ratio(me["cpu_percent_each"], ma["cpu_percent_each"]),
    }  # fmt: skip
    return {"latency": latency, "ratios": ratios}


def run(devices: int, pairs: int, idle_s: float, cache: Path) -> dict[str, Any]:
    """Start both sides, run the rounds and the idle measurement, stop everything."""
    venv = salt_venv(cache)
    with tempfile.TemporaryDirectory(prefix="sd-salt-") as tmp:
        root = Path(tmp)
        fleet = LocalFleet(root / "swarmdeploy")
        peer = SaltPeer(venv, root / "salt", devices)
        try:
            fleet.start_manager(timeout_s=60)
            ids = [f"dev{i:02d}" for i in range(1, devices + 1)]
            t0 = time.monotonic()
            for agent_id, token in zip(ids, fleet.tokens("bench", devices), strict=True):
                fleet.start_agent(agent_id, token=token, tags=[TAG])
            fleet.wait_online(ids, timeout_s=180)
            agents_ready_s = time.monotonic() - t0
            peer.configure()
            minions_ready_s = peer.start()
            with EventStream(fleet.api, {"topics": "taskUpdated"}) as events:
                events.wait_open()
                side = SideBySide(fleet, ids, peer, events)
                rounds = side.pairs(pairs)
                time.sleep(10.0)  # quiet before measuring rest
                idle = side.idle(idle_s)
        finally:
            killed = peer.stop()
            fleet.close()
    return {
        "startup_s": {
            "agents_registered_online": round(agents_ready_s, 2),
            "minions_answer_ping": round(minions_ready_s, 2),
        },
        "rounds": rounds,
        "idle": idle,
        "salt_processes_killed_at_stop": killed,
        **summary(rounds, idle),
    }


def earlier_runs(path: Path) -> list[dict[str, Any]]:
    """The headline figures of the runs already in ``path`` (the machine is shared: one run
    alone says little), newest first."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict) or "latency" not in old:
        return []
    keep = ("measured_at", "load", "latency", "ratios")
    latest = {k: old[k] for k in keep if k in old}
    previous = old.get("earlier_runs", [])
    return [latest, *(previous if isinstance(previous, list) else [])]


def main(argv: list[str]) -> int:
    """Entry point for ``python -m bench salt``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench salt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=10, help="agents and minions each")
    parser.add_argument("--pairs", type=int, default=5, help="rounds (at least 1)")
    parser.add_argument("--idle-s", type=float, default=60.0, help="rest measured, seconds")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the Salt venv is kept")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.devices < 1 or args.pairs < 1 or args.idle_s <= 0:
        parser.error("--devices and --pairs must be at least 1, --idle-s above 0")
    before = uptime()
    print(f"salt: {before}", flush=True)
    try:
        figures = run(args.devices, args.pairs, args.idle_s, args.cache)
    except (SaltError, FleetError) as exc:
        print(f"salt: FAILED: {exc}", file=sys.stderr)
        return 1
    doc = {
        "benchmark": "side by side: swarmdeploy task vs Salt state.apply, 1 MiB + one command",
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        },
        "load": {"before": before, "after": uptime()},
        "versions": {"swarmdeploy": __version__, "salt": SALT_VERSION},
        "devices": args.devices,
        "payload_bytes": 1 << 20,
        **figures,
    }
    doc["earlier_runs"] = earlier_runs(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("latency", "ratios", "idle", "load")}, indent=2))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
