"""Fleet scale: the real manager process against N simulated agents in this process.

``python -m bench fleet [--agents N[,N...]] [--payload-mb M] [--database sqlite|postgresql|URL]
[--idle-s S] [--no-deploy] [--no-gui] [--out FILE]``

For each N (default 100 and 500; ``--agents 1000`` for a thousand) a fresh manager is started
as a real process on loopback, exactly like ``swarmdeploy.localfleet`` does (own data dir,
SQLite by default; ``--database postgresql`` starts a throw-away PostgreSQL server with a fresh
database per N, ``--database URL`` uses an empty database of yours, for one N). This process
then runs N simulated agents (``swarmdeploy.simulate``, the agents of ``swarmdeploy simulate``:
own CurveZMQ keys, real registration with one-time tokens, the real agent-side ZeroMQ
transport, signature and SHA-256 checks) and measures:

* ``register``: every agent registers through ``POST /rpc/targets`` (32 at a time; a ``429``
  is waited out as its ``Retry-After`` says); ``connect``: all agents connect at once until
  every one got its ``welcome`` and the manager lists all N ``online``;
* ``deploy_small`` / ``deploy_large``: from ``POST /tasks`` (one task by tag to all) until
  every agent's ``exited`` is acknowledged, with a 10 KiB and a ``--payload-mb`` (1 MiB) zip,
  and until everything of it is acknowledged (``settled``: re-sent reports, log batches);
  ``GET /tasks/{id}`` must then show all N ``exited``; how many agents were done every 5 s
  and what they had to send again are recorded too;
* ``idle`` (with ``--idle-s S``): every agent connected and idle (heartbeats, health
  reports) for S seconds, from the moment everything the agents sent while connecting is
  acknowledged and the manager has worked off its backlog (a second under 20 % of a core,
  waited for at most 30 s): the manager's share of one core (``--no-deploy``: this without the
  deployments);
* manager CPU seconds and peak RSS per phase (psutil, sampled every 50 ms) and overall;
* ``GET /targets?perPage=1000``, ``GET /tasks/{id}`` and ``GET /metrics`` times with N targets.

Results are printed and saved to ``bench/results/fleet.json`` (entries of other N values
already in the file are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import os
import platform
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.fleet_measure import MB, Phase, ProcessMonitor, timed_get
from bench.fleet_worker import Shards, ShardSpec, default_processes
from swarmdeploy.crypto.anchors import AnchorSet, parse_anchor_file
from swarmdeploy.localfleet import LocalFleet
from swarmdeploy.simulate.agent import SimAgent
from swarmdeploy.simulate.state import Progress, SimSettings

RESULTS = Path(__file__).parent / "results" / "fleet.json"
DEFAULT_COUNTS = (100, 500)
TAG = "fleet"
REGISTRATION_RATE = "10000"  # per minute and address, the most the manager accepts


class BenchError(Exception):
    """A phase did not complete (timeout, refused registration, failed agents)."""


class PhaseFailed(BenchError):
    """A deployment did not complete; ``figures`` holds what was measured until then."""

    def __init__(self, phase: str, figures: dict[str, Any]) -> None:
        super().__init__(f"{phase}: {figures.get('error', 'failed')}")
        self.phase, self.figures = phase, figures


@dataclass(frozen=True, slots=True)
class Options:
    """One benchmark run for ``agents`` simulated agents."""

    agents: int
    payload_bytes: int = 1 << 20
    small_bytes: int = 10 << 10
    database: str = ""  # "": SQLite in the data dir; else a database URL
    heartbeat_s: float = 15.0
    health_s: float = 30.0
    concurrency: int = 32
    timeout_s: float = 240.0
    repeat: int = 5
    idle_s: float = 0.0  # seconds of idling measured after connect (0: not measured)
    transport: str = "zmq"  # the simulated agents' link: zmq or http
    encrypt_storage: bool = False  # the manager with --encrypt-storage (SQLCipher, blobs)
    deploy: bool = True  # False: no deployments (register, connect, idle and the API only)
    agent_processes: int = 1  # > 1: the agents run in that many worker processes
    gui: bool = True  # False: the manager runs with --no-gui (no web GUI loaded)


def package_b64(size_bytes: int) -> tuple[str, int]:
    """A zip (stored, incompressible ``payload.bin`` of ``size_bytes`` and ``run.sh``) as
    base64, and its size in bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("payload.bin", os.urandom(size_bytes))
        zf.writestr("run.sh", "#!/bin/sh\nwc -c payload.bin\n")
    data = buf.getvalue()
    return base64.b64encode(data).decode(), len(data)


async def wait_event(
    event: asyncio.Event, timeout_s: float, what: str, *, abort: asyncio.Event | None = None
) -> None:
    """Wait for ``event``; :class:`BenchError` naming ``what`` after ``timeout_s``, or as
    soon as ``abort`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in (event, abort) if e is not None]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    if abort is not None and abort.is_set():
        raise BenchError(f"gave up waiting for {what}: an agent failed")
    if not event.is_set():
        raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class FleetRun:
    """The phases of one run against a started manager (see the module docstring)."""

    def __init__(
        self, fleet: LocalFleet, anchors: AnchorSet, monitor: ProcessMonitor, opts: Options
    ) -> None:
        self.fleet, self.monitor, self.opts = fleet, monitor, opts
        self.progress = Progress(opts.agents)
        self.ids = [f"fleet-{i:04d}" for i in range(opts.agents)]
        self.agents: list[SimAgent] = []
        if opts.agent_processes <= 1:
            settings = SimSettings(
                fleet.url, anchors, tags=(TAG,), health_s=opts.health_s, transport=opts.transport
            )
            self.agents = [SimAgent(i, settings, self.progress) for i in self.ids]
        auth = {"Authorization": f"Bearer {fleet.admin_key}"}
        self.http = httpx.AsyncClient(base_url=fleet.url, headers=auth, timeout=120.0)

    async def run(self, tokens: list[str]) -> dict[str, Any]:
        """Every phase in order, until one fails (its error is then in ``error``); the
        agents are closed at the end whatever happens."""
        figures: dict[str, Any] = {
            "transport": self.opts.transport,
            "gui": self.opts.gui,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        }
        try:
            figures["register"] = await self.register(tokens)
            figures["connect"] = await self.connect()
            figures["api_idle"] = await self.api_timings()
            if self.opts.idle_s > 0:
                figures["idle"] = await self.idle()
            if self.opts.deploy:
                for name, size in (
                    ("small", self.opts.small_bytes),
                    ("large", self.opts.payload_bytes),
                ):
                    figures[f"deploy_{name}"] = await self.deploy(f"deploy_{name}", size)
                task_id = figures["deploy_large"]["task_id"]
                figures["api_after_deploys"] = await self.api_timings(task_id)
        except PhaseFailed as exc:
            figures[exc.phase] = exc.figures
            figures["error"] = str(exc)
        except BenchError as exc:
            figures["error"] = str(exc)
        finally:
            await self.close_agents()
            await self.http.aclose()
        figures["agent_counters"] = dict(sorted(self.progress.counts.items()))
        if self.progress.failures and "error" not in figures:
            figures["error"] = f"agents failed: {self.progress.failures[:5]}"
        return figures

    async def register(self, tokens: list[str]) -> dict[str, Any]:
        """Register every agent, ``concurrency`` at a time."""
        phase = Phase(self.monitor, "register")
        done_at, limited = await self.register_agents(tokens, phase)
        done_at.sort()
        first = done_at[: min(100, len(done_at))]
        return {
            "wall_s": round(phase.elapsed_s(), 2),
            "first_100_s": round(first[-1], 2),
            "per_s_overall": round(len(done_at) / phase.elapsed_s(), 1),
            "rate_limited_429": limited,
            **phase.figures(),
        }

    async def register_agents(self, tokens: list[str], phase: Phase) -> tuple[list[float], int]:
        """Register every agent, ``concurrency`` at a time: when each was done (seconds into
        ``phase``) and how many ``429`` were waited out."""
        deadline = time.monotonic() + self.opts.timeout_s
        gate = asyncio.Semaphore(self.opts.concurrency)
        done_at: list[float] = []

        async def one(agent: SimAgent, token: str) -> int:
            async with gate:
                limited = await agent.register(self.http, token, deadline)
            done_at.append(phase.elapsed_s())
            return limited

        limited = await asyncio.gather(
            *(one(a, t) for a, t in zip(self.agents, tokens, strict=True))
        )
        return done_at, sum(limited)

    async def start_agents(self) -> None:
        """Every agent connects out."""
        for agent in self.agents:
            await agent.start()

    def busy_count(self) -> int:
        """How many agents still wait for an acknowledgement."""
        return sum(1 for a in self.agents if not a.idle())

    async def close_agents(self) -> None:
        """Close every agent's link."""
        await asyncio.gather(*(a.close() for a in self.agents))

    async def connect(self) -> dict[str, Any]:
        """Connect every agent at once; wait for all ``welcome`` and all listed online."""
        phase = Phase(self.monitor, "connect")
        await self.start_agents()
        await wait_event(self.progress.all_welcomed, self.opts.timeout_s, "every welcome")
        welcomed_s = phase.elapsed_s()
        # the manager ends its handling of a first hello with a config push (§6.2 step 6)
        await wait_event(self.progress.all_configured, self.opts.timeout_s, "every config")
        configured_s = phase.elapsed_s()
        while (online := await self.online_count()) < self.opts.agents:
            if phase.elapsed_s() > self.opts.timeout_s:
                raise BenchError(f"only {online} of {self.opts.agents} targets online")
            await asyncio.sleep(0.5)
        return {
            "all_welcomed_s": round(welcomed_s, 2),
            "all_configured_s": round(configured_s, 2),
            "all_online_s": round(phase.elapsed_s(), 2),
            **phase.figures(),
        }

    async def idle(self) -> dict[str, Any]:
        """Every agent connected and idle (heartbeats, health reports) for ``idle_s``,
        from the moment everything of the connect storm is acknowledged."""
        t0 = time.monotonic()
        await self.settle()
        await self.manager_quiet()
        settled_s = time.monotonic() - t0
        phase = Phase(self.monitor, "idle")
        threads0 = self.monitor.thread_cpu_s()
        await asyncio.sleep(self.opts.idle_s)
        figures = phase.figures()
        threads = self.monitor.thread_cpu_s()
        share = 100 * figures["manager_cpu_s"] / phase.elapsed_s()
        by_thread = {name: round(cpu - threads0.get(name, 0.0), 2) for name, cpu in threads.items()}
        figures["manager_cpu_s_by_thread"] = {k: v for k, v in by_thread.items() if v > 0}
        return {"wall_s": round(phase.elapsed_s(), 1), "manager_cpu_percent": round(share, 2),
                "settled_before_s": round(settled_s, 2), **figures}  # fmt: skip

    async def manager_quiet(self, limit_s: float = 30.0) -> None:
        """Wait (at most ``limit_s``) until the manager used under 20 % of a core over one
        second: it has worked off what the connect storm left (e.g. the config acks)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            cpu0 = self.monitor.cpu_s()
            await asyncio.sleep(1.0)
            if self.monitor.cpu_s() - cpu0 < 0.2:
                return

    async def online_count(self) -> int:
        """How many targets the manager lists as online (every page)."""
        online, page = 0, 1
        while True:
            params: dict[str, str | int] = {"perPage": 1000, "page": page, "tags": TAG}
            resp = await self.http.get("/targets", params=params)
            resp.raise_for_status()
            doc = resp.json()
            online += sum(1 for t in doc["items"] if t["online"])
            if page * 1000 >= doc["total"]:
                return online
            page += 1

    async def api_timings(self, task_id: str | None = None) -> dict[str, Any]:
        """Times of the list, task and metrics endpoints with N targets."""
        r = self.opts.repeat
        out = {"targets_list": await timed_get(self.http, "/targets", repeat=r,
                                               params={"perPage": 1000})}  # fmt: skip
        if task_id is not None:
            out["task_get"] = await timed_get(self.http, f"/tasks/{task_id}", repeat=r)
        out["metrics"] = await timed_get(self.http, "/metrics", repeat=r)
        return out

    async def deploy(self, phase_name: str, size_bytes: int) -> dict[str, Any]:
        """One task by tag to every agent; until all ``exited`` are acknowledged."""
        zip_b64, zip_bytes = package_b64(size_bytes)
        descriptor = {
            "source": {"zip": zip_b64},
            "deploy": {"run": {"commands": ["sh run.sh"]}, "target": {"tags": [TAG]}},
        }
        counts_before = dict(self.progress.counts)
        phase = Phase(self.monitor, phase_name)
        resp = await self.http.post("/tasks", json=descriptor)
        resp.raise_for_status()
        post_s = phase.elapsed_s()
        task_id = resp.json()["id"]
        figures: dict[str, Any] = {"task_id": task_id, "payload_bytes": size_bytes}
        figures.update(artifact_bytes=zip_bytes, post_s=round(post_s, 3))
        timeline: list[list[float]] = []
        sampler = asyncio.create_task(self.sample(task_id, phase, timeline))
        try:
            done = self.progress.done_event(task_id)
            what = f"every agent's exited of {task_id}"
            await wait_event(done, self.opts.timeout_s, what, abort=self.progress.failed)
            figures["all_exited_s"] = round(phase.elapsed_s(), 2)
            print(f"fleet: phase {phase_name}: every exited after {figures['all_exited_s']} s",
                  flush=True)  # fmt: skip
            await self.settle()
            figures["all_settled_s"] = round(phase.elapsed_s(), 2)
            figures.update(phase.figures())  # before the timed GETs below
            path = f"/tasks/{task_id}"
            figures["task_get"] = await timed_get(self.http, path, repeat=self.opts.repeat)
        except BenchError as exc:
            figures["error"] = f"{exc}; {self.stragglers(task_id)}"
            figures.update(phase.figures())
        finally:
            sampler.cancel()
        states = await self.task_states(task_id)
        verified = len(self.progress.verified.get(task_id, ()))
        delta = {k: v - counts_before.get(k, 0) for k, v in self.progress.counts.items()}
        figures.update(
            states=states,
            signatures_verified=verified,
            exited=states.get("exited", 0),
            chunks=delta.get("chunks", 0),
            resent={k: v for k, v in delta.items() if k.startswith("resent") and v},
            received={k[9:]: v for k, v in delta.items() if k.startswith("received_") and v},
            timeline_s_exited=timeline,
        )
        if "error" in figures:
            raise PhaseFailed(phase_name, figures)
        if states.get("exited", 0) != self.opts.agents or verified != self.opts.agents:
            figures["error"] = f"task {task_id}: states {states}, {verified} signatures verified"
            raise PhaseFailed(phase_name, figures)
        return figures

    async def settle(self) -> None:
        """Wait until every agent's reports, log lines and requests are acknowledged (the
        manager has stored everything of the deployment)."""
        deadline = time.monotonic() + self.opts.timeout_s
        while busy := self.busy_count():
            if time.monotonic() > deadline:
                raise BenchError(f"{busy} agents still wait for acknowledgements")
            await asyncio.sleep(0.2)

    async def sample(self, task_id: str, phase: Phase, timeline: list[list[float]]) -> None:
        """Every 5 s: ``[elapsed s, agents whose exited is acknowledged]``."""
        while True:
            await asyncio.sleep(5.0)
            done = len(self.progress.exited.get(task_id, ()))
            timeline.append([round(phase.elapsed_s(), 1), done])

    async def task_states(self, task_id: str) -> dict[str, int]:
        """``{state: count}`` of the task's deploy targets, from ``GET /tasks/{id}``."""
        resp = await self.http.get(f"/tasks/{task_id}")
        resp.raise_for_status()
        counts: dict[str, int] = {}
        for row in resp.json()["targets"]:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return counts

    def stragglers(self, task_id: str) -> str:
        """Which agents have not finished ``task_id``, and where they stand."""
        done = self.progress.exited.get(task_id, set())
        late = [a for a in self.agents if a.target_id not in done]
        where = {a.target_id: str(a.tasks[task_id].state) if task_id in a.tasks else "not announced"
                 for a in late[:10]}  # fmt: skip
        return f"{len(late)} unfinished, e.g. {where}; failures: {self.progress.failures[:5]}"


class ShardedFleetRun(FleetRun):
    """:class:`FleetRun` with the agents in ``opts.agent_processes`` worker processes
    (``bench/fleet_worker.py``); the phases and what they measure are the same."""

    def __init__(
        self, fleet: LocalFleet, anchors: AnchorSet, monitor: ProcessMonitor, opts: Options
    ) -> None:
        super().__init__(fleet, anchors, monitor, opts)
        self.ca_pem = (fleet.manager_dir / "ca.pem").read_text()
        self.shards: Shards | None = None

    def specs(self) -> list[ShardSpec]:
        """The agent ids split into ``agent_processes`` shards of (nearly) equal size."""
        n = self.opts.agent_processes
        gate = max(1, self.opts.concurrency // n)  # the same registrations in flight overall
        return [
            ShardSpec(self.fleet.url, self.fleet.admin_key, self.ca_pem, tuple(self.ids[i::n]),
                      (TAG,), self.opts.health_s, self.opts.transport, gate)
            for i in range(n)
        ]  # fmt: skip

    async def run(self, tokens: list[str]) -> dict[str, Any]:
        """Start the workers and wait until they built their agents, then every phase."""
        self.shards = Shards(self.specs(), self.progress)
        try:
            await self.shards.ready()
        except RuntimeError as exc:
            await self.shards.close()
            return {"error": f"agent processes: {exc}"}
        n = self.opts.agent_processes
        by_id = dict(zip(self.ids, tokens, strict=True))
        ordered = [by_id[i] for k in range(n) for i in self.ids[k::n]]
        figures = await super().run(ordered)
        figures["agent_processes"] = n
        return figures

    async def register_agents(self, tokens: list[str], phase: Phase) -> tuple[list[float], int]:
        """Every worker registers its shard (``concurrency`` in flight over all)."""
        assert self.shards is not None
        started = time.monotonic() - phase.elapsed_s()
        try:
            done, limited = await self.shards.register(tokens, started + self.opts.timeout_s)
        except RuntimeError as exc:
            raise BenchError(f"registration failed: {exc}") from None
        return [t - started for t in done], limited

    async def start_agents(self) -> None:
        """Every worker connects its agents."""
        assert self.shards is not None
        try:
            await self.shards.start()
        except RuntimeError as exc:
            raise BenchError(f"connect failed: {exc}") from None

    def busy_count(self) -> int:
        """Agents still waiting for an acknowledgement, as the workers last reported."""
        return 0 if self.shards is None else sum(self.shards.busy)

    async def close_agents(self) -> None:
        """Close every worker's agents and end the workers (their last counters are kept)."""
        if self.shards is not None:
            await self.shards.close()

    def stragglers(self, task_id: str) -> str:
        """How many agents have not finished ``task_id`` (which ones: the first ten)."""
        done = self.progress.finals.get(task_id, {})
        late = [i for i in self.ids if i not in done]
        return f"{len(late)} unfinished, e.g. {late[:10]}; failures: {self.progress.failures[:5]}"


def _manager_args(opts: Options) -> list[str]:
    args = ["--registration-rate", REGISTRATION_RATE]
    args += ["--heartbeat-interval", str(opts.heartbeat_s)]
    if opts.database:
        args += ["--database", opts.database]
    if opts.encrypt_storage:
        args += ["--encrypt-storage"]
    if not opts.gui:
        args += ["--no-gui"]
    if opts.transport == "http":  # a parked long-poll and a kept connection per agent
        args += ["--max-connections", str(max(1000, 3 * opts.agents))]
    return args


def run_once(opts: Options) -> dict[str, Any]:
    """Start a manager, run every phase for ``opts.agents`` agents, stop everything; return
    the figures (with ``error`` when a phase failed; the manager log's tail is printed)."""
    with (
        tempfile.TemporaryDirectory(prefix="sd-fleet-") as tmp,
        LocalFleet(Path(tmp), manager_args=_manager_args(opts)) as fleet,
    ):
        fleet.start_manager(timeout_s=60)
        assert fleet.manager is not None
        tokens = fleet.tokens("fleet", opts.agents)
        anchors = parse_anchor_file((fleet.manager_dir / "ca.pem").read_text())
        with ProcessMonitor(fleet.manager.pid) as monitor:
            started_rss = monitor.rss()
            cpu0 = monitor.cpu_s()
            kind = ShardedFleetRun if opts.agent_processes > 1 else FleetRun
            figures = asyncio.run(kind(fleet, anchors, monitor, opts).run(tokens))
            figures["manager"] = {
                "rss_after_start_mb": round(started_rss / MB, 1),
                "rss_at_end_mb": round(monitor.rss() / MB, 1),
                "peak_rss_mb": round(max(monitor.overall_peak, monitor.hwm_bytes()) / MB, 1),
                "cpu_s_total": round(monitor.cpu_s() - cpu0, 2),
            }
        if "error" in figures:
            tail = (Path(tmp) / "manager.log").read_text(errors="replace")[-3000:]
            print(f"--- manager log (tail) ---\n{tail}", file=sys.stderr)
    return figures


@contextlib.contextmanager
def databases(kind: str, counts: Sequence[int]) -> Iterator[list[str]]:
    """One database URL per run: ``""`` (SQLite) for ``sqlite``, fresh databases on a
    throw-away server for ``postgresql``, else the given URL (one run only)."""
    if kind == "sqlite":
        yield [""] * len(counts)
        return
    if kind != "postgresql":
        if len(counts) != 1:
            raise BenchError("--database URL needs an empty database: give one --agents value")
        yield [kind]
        return
    from tests.fixtures_pg import start_pg_server  # the test suite's throw-away server

    server = start_pg_server()
    try:
        yield [server.create_database("fleet") for _ in counts]
    finally:
        server.stop()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def save(path: Path, results: dict[str, Any], database: str) -> dict[str, Any]:
    """Merge ``results`` (by agent count) into the JSON document at ``path``; return it."""
    doc: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            doc = json.loads(path.read_text())
    merged = dict(doc.get("results", {})) if isinstance(doc.get("results"), dict) else {}
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for count, figures in results.items():
        merged[count] = {"measured_at": when, "database": database, **figures}
    doc = {
        "benchmark": "fleet scale: real manager process, N simulated agents (CurveZMQ, signed)",
        "machine": machine(),
        "results": dict(sorted(merged.items(), key=lambda kv: int(kv[0]))),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _counts(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("agent counts are positive integers")
    return values


def main(argv: list[str]) -> int:
    """Entry point for ``python -m bench fleet``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--agents", type=_counts, action="extend", help="N or N,N,... (100,500)")
    parser.add_argument("--payload-mb", type=float, default=1.0, help="larger payload, MiB")
    parser.add_argument("--small-kib", type=float, default=10.0, help="small payload, KiB")
    parser.add_argument("--database", default="sqlite", help="sqlite, postgresql or a URL")
    parser.add_argument("--heartbeat-s", type=float, default=15.0)
    parser.add_argument("--health-s", type=float, default=30.0, help="0: no health reports")
    parser.add_argument("--timeout-s", type=float, default=240.0, help="per phase")
    parser.add_argument("--idle-s", type=float, default=0.0, help="idle phase after connect")
    parser.add_argument(
        "--encrypt-storage", action="store_true", help="manager with storage encrypted at rest"
    )
    parser.add_argument("--transport", choices=("zmq", "http"), default="zmq",
                        help="the simulated agents' link (http: sealed long-polls)")  # fmt: skip
    parser.add_argument(
        "--no-deploy", action="store_true", help="skip the deployments (e.g. with --idle-s)"
    )
    parser.add_argument(
        "--no-gui", action="store_true", help="the manager without its web GUI (--no-gui)"
    )
    parser.add_argument(
        "--agent-processes",
        type=int,
        default=0,
        help="worker processes for the agents (0: 1 up to 1500 agents, else one per 1250)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    counts: list[int] = args.agents or list(DEFAULT_COUNTS)
    if args.agent_processes < 0 or args.agent_processes > min(counts):
        parser.error("--agent-processes: 0 (chosen from the count) up to the smallest count")
    base = Options(
        agents=counts[0],
        payload_bytes=int(args.payload_mb * (1 << 20)),
        small_bytes=int(args.small_kib * 1024),
        heartbeat_s=args.heartbeat_s,
        health_s=args.health_s,
        timeout_s=args.timeout_s,
        idle_s=args.idle_s,
        encrypt_storage=args.encrypt_storage,
        transport=args.transport,
        deploy=not args.no_deploy,
        gui=not args.no_gui,
    )
    results: dict[str, Any] = {}
    with databases(args.database, counts) as urls:
        for count, url in zip(counts, urls, strict=True):
            print(f"fleet: {count} agents ...", flush=True)
            procs = args.agent_processes or default_processes(count)
            opts = replace(base, agents=count, database=url, agent_processes=procs)
            results[str(count)] = run_once(opts)
            print(json.dumps(results[str(count)], indent=2), flush=True)
    db = "sqlite" if args.database == "sqlite" else "postgresql"
    save(args.out, results, db)
    print(f"saved {args.out}")
    failed = [f"{n} agents: {r['error']}" for n, r in results.items() if "error" in r]
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
