"""Staged rollout at fleet scale: the real manager process against N simulated agents.

``python -m bench rollout [--agents N] [--failure-rate F[,F...]] [--seed S] [--out FILE]``

For each failure rate (default ``0.2`` and ``0.0``) a fresh manager is started as a real
process on loopback (``swarmdeploy.localfleet``, SQLite), N simulated agents (default 1,000;
``swarmdeploy.simulate``: real registration, CurveZMQ, signature and digest checks) register
and connect from this process, and one task is created with a rollout of three groups, 1 % /
10 % / the rest, each with an error threshold of 5 % (issue 15). Each simulated install fails
with the failure rate, drawn from ``--seed`` and the agent's id, so a run is repeatable; the
failures the seed gives the first group are computed up front (``expected_first_group_failures``).

Measured per run:

* ``time_to_halt_s`` / ``time_to_complete_s``: from the task's creation to the rollout's
  last change, by the manager's own timestamps (``createdAt``, ``rollout.updatedAt``);
  ``seen_after_s``: until this process read it;
* ``announced_per_group``: how many agents of each group were **announced** the task,
  counted at the agents (each keeps the tasks announced to it), once every announced agent's
  final state is acknowledged;
* ``failures_seen``: the first group's failed count in the task document, and the simulated
  failures the agents drew;
* ``in_order``: for a completed rollout, no group's device left ``pending`` before every
  device of the group before it had succeeded (task documents read every 0.25 s; states never
  go back, so this holds between readings too).

Results are printed and saved to ``bench/results/rollout.json``. ``run_rollout`` is what
``tests/simulate/test_rollout_scale.py`` runs with 200 agents.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.bench_fleet import machine
from swarmdeploy.crypto.anchors import parse_anchor_file
from swarmdeploy.localfleet import LocalFleet
from swarmdeploy.simulate.fleet import SimFleet
from swarmdeploy.simulate.state import SimSettings

RESULTS = Path(__file__).parent / "results" / "rollout.json"
TAG = "roll"
PREFIX = "roll-"
GROUPS = [
    {"name": "canary", "percent": 1, "errorThreshold": 5},
    {"name": "early", "percent": 10, "errorThreshold": 5},
    {"name": "rest", "errorThreshold": 5},
]
REGISTRATION = ["--registration-rate", "10000", "--registration-burst", "2000"]


class BenchError(Exception):
    """A step did not complete in time."""


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """One run: ``agents`` simulated agents whose installs fail at ``failure_rate``."""

    agents: int = 1000
    failure_rate: float = 0.2
    seed: int = 1
    install_s: float = 0.2
    timeout_s: float = 600.0


def agent_ids(count: int) -> list[str]:
    """The ids ``SimFleet`` gives ``count`` agents (sorted, as the groups take them)."""
    width = max(4, len(str(count)))
    return [f"{PREFIX}{i:0{width}d}" for i in range(1, count + 1)]


def first_draw_fails(seed: int, target_id: str, failure_rate: float) -> bool:
    """Whether the simulated agent's first install fails (``SimAgent``'s seeded draw)."""
    return random.Random(f"{seed}/{target_id}").random() < failure_rate


def planned_groups(ids: Sequence[str]) -> list[list[str]]:
    """The members of the three groups (``rollouts.plan_groups``: by id, percent of all
    matched devices rounded up, the rest last)."""
    first = math.ceil(len(ids) * 0.01)
    second = math.ceil(len(ids) * 0.10)
    return [list(ids[:first]), list(ids[first : first + second]), list(ids[first + second :])]


@contextlib.asynccontextmanager
async def simulated_fleet(
    root: Path, agents: int, *, failure_rate: float, seed: int, install_s: float
) -> AsyncIterator[tuple[LocalFleet, SimFleet, httpx.AsyncClient]]:
    """A started manager process and ``agents`` registered, connected, online simulated
    agents tagged :data:`TAG`; everything is stopped at the end."""
    with LocalFleet(root, manager_args=REGISTRATION) as fleet:
        fleet.start_manager(timeout_s=60)
        tokens = fleet.tokens("roll", agents)
        anchors = parse_anchor_file((fleet.manager_dir / "ca.pem").read_text())
        settings = SimSettings(
            fleet.url, anchors, tags=(TAG,), health_s=0.0, install_s=install_s,
            failure_rate=failure_rate, seed=seed,
        )  # fmt: skip
        sims = SimFleet(settings, agents, PREFIX)
        auth = {"Authorization": f"Bearer {fleet.admin_key}"}
        async with httpx.AsyncClient(base_url=fleet.url, headers=auth, timeout=60.0) as http:
            try:
                await sims.register(http, tokens, timeout_s=300)
                await sims.start("127.0.0.1")
                async with asyncio.timeout(300):  # every agent's first hello handled
                    await sims.progress.all_configured.wait()
                await wait_online(http, agents, timeout_s=300)
                yield fleet, sims, http
            finally:
                await sims.close()


async def wait_online(http: httpx.AsyncClient, agents: int, *, timeout_s: float) -> None:
    """Until the manager lists ``agents`` targets tagged :data:`TAG` online."""
    deadline = time.monotonic() + timeout_s
    while True:
        online, page = 0, 1
        while True:
            params: dict[str, str | int] = {"perPage": 1000, "page": page, "tags": TAG}
            doc = await get_json(http, "/targets", params)
            online += sum(1 for t in doc["items"] if t["online"])
            if page * 1000 >= doc["total"]:
                break
            page += 1
        if online >= agents:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"only {online} of {agents} simulated agents online")
        await asyncio.sleep(0.5)


async def get_json(
    http: httpx.AsyncClient, path: str, params: dict[str, str | int] | None = None
) -> dict[str, Any]:
    """``GET path``; a connection the manager closed as it was reused (keep-alive) is tried
    again, up to three times."""
    for attempt in range(3):
        try:
            doc: dict[str, Any] = (await http.get(path, params=params)).raise_for_status().json()
            return doc
        except httpx.TransportError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def wait_until(what: str, timeout_s: float, check: Any) -> None:
    """Until the (sync) ``check()`` holds; :class:`BenchError` naming ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


def staged_descriptor(app: str = "detector", version: str = "2") -> dict[str, Any]:
    """The task of a run: ``true`` on every agent tagged :data:`TAG`, in three groups."""
    return {
        "app": app,
        "version": version,
        "deploy": {"run": {"commands": ["true"]}, "target": {"tags": [TAG]}},
        "rollout": {"groups": GROUPS},
    }


def announced(sims: SimFleet, task_id: str, members: Sequence[str]) -> int:
    """How many of ``members`` were announced ``task_id`` (counted at the agents)."""
    wanted = set(members)
    return sum(1 for a in sims.agents if a.target_id in wanted and task_id in a.tasks)


def settled(sims: SimFleet, task_id: str) -> bool:
    """Whether every agent announced ``task_id`` has its final state acknowledged."""
    done = sims.progress.finals.get(task_id, {})
    return all(a.target_id in done for a in sims.agents if task_id in a.tasks)


async def follow(
    http: httpx.AsyncClient, task_id: str, groups: list[list[str]], timeout_s: float
) -> tuple[dict[str, Any], list[int | None], list[int | None]]:
    """Read the task every 0.25 s until its rollout halted, completed or was aborted.
    Returns the last document and, per group, the reading at which a member first left
    ``pending`` and at which every member had first succeeded (``None``: never)."""
    left: list[int | None] = [None] * len(groups)
    succeeded: list[int | None] = [None] * len(groups)
    deadline = time.monotonic() + timeout_s
    reading = 0
    while True:
        doc = await get_json(http, f"/tasks/{task_id}")
        states = {t["id"]: t["state"] for t in doc["targets"]}
        for i, members in enumerate(groups):
            if left[i] is None and any(states[t] != "pending" for t in members):
                left[i] = reading
            if succeeded[i] is None and all(states[t] in ("running", "exited") for t in members):
                succeeded[i] = reading
        if doc["rollout"]["state"] in ("halted", "completed", "aborted"):
            return doc, left, succeeded
        if time.monotonic() > deadline:
            raise BenchError(f"rollout still {doc['rollout']['state']} after {timeout_s:.0f} s")
        reading += 1
        await asyncio.sleep(0.25)


def in_order(left: Sequence[int | None], succeeded: Sequence[int | None]) -> bool:
    """Whether no group left ``pending`` before the group before it had all succeeded."""
    for i in range(len(left) - 1):
        later, done = left[i + 1], succeeded[i]
        if later is not None and (done is None or done > later):
            return False
    return True


async def run_rollout(root: Path, opts: Options) -> dict[str, Any]:
    """One run (see the module docstring); returns its figures."""
    ids = agent_ids(opts.agents)
    groups = planned_groups(ids)
    expected = sum(first_draw_fails(opts.seed, t, opts.failure_rate) for t in groups[0])
    fleet = simulated_fleet(
        root, opts.agents, failure_rate=opts.failure_rate, seed=opts.seed,
        install_s=opts.install_s,
    )  # fmt: skip
    async with fleet as (_, sims, http):
        posted = time.monotonic()
        created = (await http.post("/tasks", json=staged_descriptor())).raise_for_status().json()
        task_id = created["id"]
        doc, left, succeeded = await follow(http, task_id, groups, opts.timeout_s)
        seen_s = time.monotonic() - posted
        await wait_until("every announced agent's final state", opts.timeout_s,
                         lambda: settled(sims, task_id))  # fmt: skip
        doc = await get_json(http, f"/tasks/{task_id}")
        rollout = doc["rollout"]
        name = "time_to_halt_s" if rollout["state"] == "halted" else "time_to_complete_s"
        return {
            "agents": opts.agents,
            "failure_rate": opts.failure_rate,
            "seed": opts.seed,
            "task_id": task_id,
            "state": rollout["state"],
            "current_group": rollout["currentGroup"],
            "reason": rollout["reason"],
            name: round((rollout["updatedAt"] - doc["createdAt"]) / 1000, 2),
            "seen_after_s": round(seen_s, 2),
            "group_sizes": [g["size"] for g in rollout["groups"]],
            "announced_per_group": [announced(sims, task_id, m) for m in groups],
            "expected_first_group_failures": expected,
            "failures_seen": {
                "first_group_failed": rollout["groups"][0]["failed"],
                "simulated_install_failures": sims.progress.counts.get("simulated_failures", 0),
            },
            "in_order": in_order(left, succeeded),
            "state_counts": doc["stateCounts"],
        }


def save(path: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge ``runs`` (by agents and failure rate) into the JSON document at ``path``."""
    doc: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            doc = json.loads(path.read_text())
    merged = dict(doc.get("results", {})) if isinstance(doc.get("results"), dict) else {}
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for run in runs:
        merged[f"{run['agents']}@{run['failure_rate']:g}"] = {"measured_at": when, **run}
    doc = {
        "benchmark": "staged rollout 1 % / 10 % / rest, error threshold 5 %: real manager "
        "process, N simulated agents (CurveZMQ, signed)",
        "machine": machine(),
        "results": dict(sorted(merged.items())),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; exit 1 when a run fails."""
    p = argparse.ArgumentParser(prog="python -m bench rollout", description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--failure-rate", default="0.2,0.0", help="comma list (0.2,0.0)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--install-s", type=float, default=0.2)
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(list(argv))
    runs = []
    for rate in (float(r) for r in a.failure_rate.split(",")):
        opts = Options(a.agents, rate, a.seed, a.install_s, a.timeout_s)
        with tempfile.TemporaryDirectory(prefix="sd-rollout-") as tmp:
            try:
                run = asyncio.run(run_rollout(Path(tmp), opts))
            except (BenchError, httpx.HTTPError) as exc:
                print(f"rollout bench, {a.agents} agents at {rate:g}: {exc}", file=sys.stderr)
                tail = (Path(tmp) / "manager.log").read_text(errors="replace")[-3000:]
                print(f"--- manager log (tail) ---\n{tail}", file=sys.stderr)
                return 1
        print(json.dumps(run, indent=2))
        runs.append(run)
    save(a.out, runs)
    return 0
