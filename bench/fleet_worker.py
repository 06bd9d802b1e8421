"""Simulated agents of ``python -m bench fleet`` spread over worker processes.

One process cannot hold more than about 2,000 simulated agents: each holds about 8 file
descriptors (two ZeroMQ sockets, their pipes and the connections) and the per-process limit
(``ulimit -Hn``) is reached during the connect. With ``--agent-processes N`` (chosen from the
count above :data:`SHARD_ABOVE` agents) the agents are split into N shards; each worker
process runs its shard on its own event loop (:func:`worker_main`) and streams what its agents
did (welcomes, configs, acknowledged final states, verified signatures, failures, counters,
how many still wait for acknowledgements) every :data:`REPORT_S` seconds to the benchmark
process, which feeds the same :class:`~swarmdeploy.simulate.state.Progress` events the
single-process run waits on (:class:`Shards`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from swarmdeploy.crypto.anchors import parse_anchor_file
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.simulate.agent import SimAgent
from swarmdeploy.simulate.state import Progress, SimSettings

SHARD_ABOVE = 1500  # up to this many agents run in the benchmark process itself
AGENTS_PER_PROCESS = 1250
REPORT_S = 0.1  # how often a worker sends what changed


def default_processes(agents: int) -> int:
    """Worker processes for ``agents`` simulated agents (1: all in the benchmark process)."""
    return 1 if agents <= SHARD_ABOVE else math.ceil(agents / AGENTS_PER_PROCESS)


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """What one worker needs to build its agents (picklable)."""

    manager_url: str
    admin_key: str
    ca_pem: str
    ids: tuple[str, ...]
    tags: tuple[str, ...]
    health_s: float
    transport: str
    concurrency: int


class _Reporter:
    """What changed in a worker's :class:`Progress` since the last report."""

    def __init__(self, progress: Progress, agents: list[SimAgent]) -> None:
        self.progress, self.agents = progress, agents
        self._welcomed: set[str] = set()
        self._configured: set[str] = set()
        self._finals: dict[str, set[str]] = {}
        self._verified: dict[str, set[str]] = {}
        self._failures = 0

    def delta(self) -> dict[str, Any]:
        """The report: new ids per event, failures, all counters and the busy count."""
        p = self.progress
        welcomed = p.welcomed - self._welcomed
        configured = p.configured - self._configured
        self._welcomed |= welcomed
        self._configured |= configured
        finals: dict[str, dict[str, str]] = {}
        for task_id, states in p.finals.items():
            seen = self._finals.setdefault(task_id, set())
            new = {t: str(s) for t, s in states.items() if t not in seen}
            seen.update(new)
            if new:
                finals[task_id] = new
        verified: dict[str, list[str]] = {}
        for task_id, ids in p.verified.items():
            seen = self._verified.setdefault(task_id, set())
            if fresh := ids - seen:
                seen |= fresh
                verified[task_id] = sorted(fresh)
        failures = p.failures[self._failures :]
        self._failures = len(p.failures)
        return {
            "welcomed": sorted(welcomed),
            "configured": sorted(configured),
            "finals": finals,
            "verified": verified,
            "failures": failures,
            "counts": dict(p.counts),
            "busy": sum(1 for a in self.agents if not a.idle()),
        }


async def _register(agents: list[SimAgent], spec: ShardSpec, cmd: tuple[Any, ...]) -> Any:
    tokens, deadline = cmd[1], cmd[2]
    gate = asyncio.Semaphore(spec.concurrency)
    done_at: list[float] = []
    auth = {"Authorization": f"Bearer {spec.admin_key}"}
    async with httpx.AsyncClient(base_url=spec.manager_url, headers=auth, timeout=120.0) as http:

        async def one(agent: SimAgent, token: str) -> int:
            async with gate:
                limited = await agent.register(http, token, deadline)
            done_at.append(time.monotonic())
            return limited

        limited = await asyncio.gather(*(one(a, t) for a, t in zip(agents, tokens, strict=True)))
    return ("registered", done_at, sum(limited))


async def _serve(conn: Connection, spec: ShardSpec) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        try:
            while conn.poll():
                commands.put_nowait(conn.recv())
        except EOFError:  # the benchmark process is gone
            loop.remove_reader(conn.fileno())
            commands.put_nowait(("close",))

    anchors = parse_anchor_file(spec.ca_pem)
    settings = SimSettings(
        spec.manager_url, anchors, tags=spec.tags, health_s=spec.health_s, transport=spec.transport
    )
    progress = Progress(len(spec.ids))
    agents = [SimAgent(i, settings, progress) for i in spec.ids]
    reporter = _Reporter(progress, agents)
    loop.add_reader(conn.fileno(), readable)

    async def report() -> None:
        while True:
            await asyncio.sleep(REPORT_S)
            conn.send(("report", reporter.delta()))

    reporting = asyncio.create_task(report())
    conn.send(("ready",))
    try:
        while (cmd := await commands.get())[0] != "close":
            try:
                if cmd[0] == "register":
                    conn.send(await _register(agents, spec, cmd))
                elif cmd[0] == "start":
                    for agent in agents:
                        await agent.start()
                    conn.send(("started",))
            except Exception as exc:  # told to the benchmark, which fails the phase
                conn.send(("error", f"{cmd[0]}: {type(exc).__name__}: {exc}"))
    finally:
        reporting.cancel()
        await asyncio.gather(*(a.close() for a in agents))
        with contextlib.suppress(OSError):
            conn.send(("report", reporter.delta()))
            conn.send(("closed",))


def worker_main(fd: int) -> None:
    """Entry of one worker process (``python -m bench.fleet_worker FD``): read the
    :class:`ShardSpec` from the connection at ``fd``, serve its agents until told to close."""
    conn = Connection(fd)
    fields = conn.recv()
    fields["ids"], fields["tags"] = tuple(fields["ids"]), tuple(fields["tags"])
    asyncio.run(_serve(conn, ShardSpec(**fields)))


class Shards:
    """The benchmark side: starts the workers and feeds their reports into ``progress``."""

    def __init__(self, specs: list[ShardSpec], progress: Progress) -> None:
        self.progress = progress
        self.specs = specs
        self.counts: list[dict[str, int]] = [{} for _ in specs]
        self.busy = [len(s.ids) for s in specs]
        self._replies: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in specs]
        self._closing = False
        self._conns: list[Connection] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        root = Path(__file__).resolve().parent.parent
        for spec in specs:
            mine, theirs = socket.socketpair()
            with theirs:
                cmd = [sys.executable, "-m", "bench.fleet_worker", str(theirs.fileno())]
                proc = subprocess.Popen(cmd, cwd=root, pass_fds=(theirs.fileno(),))
            conn = Connection(mine.detach())
            conn.send(dataclasses.asdict(spec))
            self._conns.append(conn)
            self._procs.append(proc)
        loop = asyncio.get_running_loop()
        for i, conn in enumerate(self._conns):
            loop.add_reader(conn.fileno(), self._reader(i))

    def _reader(self, i: int) -> Callable[[], None]:
        conn = self._conns[i]

        def readable() -> None:
            try:
                while conn.poll():
                    self._take(i, conn.recv())
            except (EOFError, OSError):
                asyncio.get_running_loop().remove_reader(conn.fileno())
                self._replies[i].put_nowait(("error", f"agent process {i} ended"))
                if not self._closing:
                    self.progress.fail(f"shard-{i}", "its agent process ended")

        return readable

    def _take(self, i: int, msg: tuple[Any, ...]) -> None:
        if msg[0] != "report":
            self._replies[i].put_nowait(msg)
            return
        d, p = msg[1], self.progress
        for target_id in d["welcomed"]:
            p.note_welcome(target_id)
        for target_id in d["configured"]:
            p.note_configured(target_id)
        for task_id, ids in d["verified"].items():
            p.verified.setdefault(task_id, set()).update(ids)
        for task_id, states in d["finals"].items():
            for target_id, state in states.items():
                p.note_final(task_id, target_id, TargetState(state))
        for text in d["failures"]:
            target_id, _, what = text.partition(": ")
            p.fail(target_id, what)
        self.counts[i] = d["counts"]
        self.busy[i] = d["busy"]
        p.counts = {}
        for counts in self.counts:
            for key, value in counts.items():
                p.count(key, value)

    async def _all(self, cmd: tuple[Any, ...], want: str) -> list[tuple[Any, ...]]:
        for conn in self._conns:
            conn.send(cmd)
        replies = [await q.get() for q in self._replies]
        errors = [r[1] for r in replies if r[0] != want]
        if errors:
            raise RuntimeError("; ".join(errors))
        return replies

    async def register(self, tokens: list[str], deadline: float) -> tuple[list[float], int]:
        """Register every shard's agents with its tokens; the monotonic times each
        registration ended, and how many ``429`` were waited out."""
        at, cmds = 0, []
        for spec in self.specs:
            cmds.append(("register", tokens[at : at + len(spec.ids)], deadline))
            at += len(spec.ids)
        for conn, cmd in zip(self._conns, cmds, strict=True):
            conn.send(cmd)
        replies = [await q.get() for q in self._replies]
        errors = [r[1] for r in replies if r[0] != "registered"]
        if errors:
            raise RuntimeError("; ".join(errors))
        return [t for r in replies for t in r[1]], sum(r[2] for r in replies)

    async def ready(self) -> None:
        """Wait until every worker has built its agents (keys and all)."""
        replies = [await q.get() for q in self._replies]
        if errors := [r[1] for r in replies if r[0] != "ready"]:
            raise RuntimeError("; ".join(errors))

    async def start(self) -> None:
        """Every agent of every shard connects."""
        await self._all(("start",), "started")

    async def close(self) -> None:
        """Close every agent, take the last reports, end the workers."""
        loop = asyncio.get_running_loop()
        self._closing = True
        for i, conn in enumerate(self._conns):
            with contextlib.suppress(OSError):
                conn.send(("close",))
            with contextlib.suppress(TimeoutError):
                while (await asyncio.wait_for(self._replies[i].get(), 30.0))[0] not in (
                    "closed",
                    "error",
                ):
                    pass
        for conn, proc in zip(self._conns, self._procs, strict=True):
            loop.remove_reader(conn.fileno())
            conn.close()
            try:
                await asyncio.to_thread(proc.wait, 10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    worker_main(int(sys.argv[1]))
