"""Operating a staged rollout against simulated agents (a real manager process, 20 agents in
this process over CurveZMQ): a first group whose installs fail halts it; once the cause is
fixed, "retry the failed devices" and resume carry it on; pause holds the next group back;
``swarmdeploy tasks rollback`` deploys the previous release to the devices that got the new
one and aborts the rest (counted at the agents: the last group never hears of the task)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.bench_rollout import agent_ids, announced, settled, simulated_fleet

from swarmdeploy.cli.app import main
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.simulate.fleet import SimFleet

pytestmark = pytest.mark.e2e

AGENTS = 20
IDS = agent_ids(AGENTS)
FIRST, SECOND, REST = IDS[:4], IDS[4:8], IDS[8:]


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 90) -> None:
    """Poll ``check`` (the manager's documents, the agents' records) until it holds."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}") from None


async def _doc(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = (await http.get(f"/tasks/{task_id}")).raise_for_status().json()
    return doc


async def _post(http: httpx.AsyncClient, path: str, **kwargs: Any) -> dict[str, Any]:
    r = await http.post(path, **kwargs)
    assert r.status_code in (200, 201), r.text
    doc: dict[str, Any] = r.json()
    return doc


def _failing(sims: SimFleet, ids: list[str], rate: float) -> None:
    """Make the installs of ``ids`` fail at ``rate`` (a broken, then a fixed, device)."""
    for agent in sims.agents:
        if agent.target_id in ids:
            agent.settings = dataclasses.replace(agent.settings, failure_rate=rate)


def _release(version: str, rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "app": "detector",
        "version": version,
        "deploy": {"run": {"commands": ["true"]}, "target": {"tags": ["roll"]}},
    }
    if rollout is not None:
        doc["rollout"] = rollout
    return doc


async def _scenario(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with simulated_fleet(root, AGENTS, failure_rate=0.0, seed=1, install_s=0.1) as (
        fleet,
        sims,
        http,
    ):
        v1 = (await _post(http, "/tasks", json=_release("1")))["id"]
        await _until("v1 everywhere", lambda: _all(sims, v1, IDS, TargetState.EXITED))

        _failing(sims, FIRST, 1.0)
        groups = [{"count": 4, "errorThreshold": 0}, {"count": 4, "soak": 3600}, {}]
        v2 = (await _post(http, "/tasks", json=_release("2", {"groups": groups})))["id"]
        await _until("halted", lambda: _rollout_is(http, v2, "halted"))
        await _until("first group final", lambda: _all(sims, v2, FIRST, TargetState.INSTALL_FAILED))
        assert announced(sims, v2, SECOND + REST) == 0
        # following a halted rollout ends at once, with exit status 1 and the reason
        cli = ["--url", fleet.url, f"--api-key={fleet.admin_key}"]
        rc = main([*cli, "tasks", "watch", v2, "--poll", "1", "--timeout", "60"])
        out = capsys.readouterr().out
        assert rc == 1, out
        assert f"task {v2}: rollout halted, group 1 of 3 (1): group 1: 4 of 4" in out
        assert "| 1 halted 0/4 ok, 4 failed; 2 waiting 0/4 ok, 0 failed;" in out

        # fix the cause, retry the failed devices, resume
        _failing(sims, FIRST, 0.0)
        retried = await _post(http, f"/tasks/{v2}/retry", json={})
        assert {t["state"] for t in retried["targets"] if t["id"] in FIRST} == {"pending"}
        assert (await _post(http, f"/tasks/{v2}/resume"))["rollout"]["state"] == "running"
        await _until("second group soaking", lambda: _soaking(http, v2, 1))
        assert announced(sims, v2, SECOND) == 4 and announced(sims, v2, REST) == 0

        paused = await _post(http, f"/tasks/{v2}/pause")
        assert paused["rollout"]["state"] == "paused"
        assert (await _post(http, f"/tasks/{v2}/resume"))["rollout"]["state"] == "running"
        await _until("soaking again", lambda: _soaking(http, v2, 1))

        rc = main([*cli, "tasks", "rollback", v2])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert f"rolling task {v2} back: task " in out.out
        assert "deploys detector 1 to 8 device(s)" in out.out
        back = (await _doc(http, v2))["rolledBackBy"][0]
        await _until("v1 back on the eight", lambda: _all(sims, back, FIRST + SECOND,
                                                          TargetState.EXITED))  # fmt: skip
        await _until("all acknowledged", lambda: _settled(sims, back))

        doc = await _doc(http, v2)
        assert doc["rollout"]["state"] == "aborted"
        assert {(t["state"], t["reason"]) for t in doc["targets"] if t["id"] in REST} == {
            ("stopped", "rollout aborted")
        }
        assert announced(sims, v2, REST) == 0 and announced(sims, back, REST) == 0
        rolled = await _doc(http, back)
        assert rolled["rollbackOf"] == v2 and f"to task {v1} (detector 1)" in rolled["description"]
        assert sorted(t["id"] for t in rolled["targets"]) == FIRST + SECOND


async def _all(sims: SimFleet, task_id: str, ids: list[str], state: TargetState) -> bool:
    done = sims.progress.finals.get(task_id, {})
    return all(done.get(t) is state for t in ids)


async def _settled(sims: SimFleet, task_id: str) -> bool:
    return settled(sims, task_id)


async def _rollout_is(http: httpx.AsyncClient, task_id: str, state: str) -> bool:
    return bool((await _doc(http, task_id))["rollout"]["state"] == state)


async def _soaking(http: httpx.AsyncClient, task_id: str, group: int) -> bool:
    rollout = (await _doc(http, task_id))["rollout"]
    return bool(rollout["currentGroup"] == group and rollout["soakUntil"] is not None)


def test_halt_retry_resume_pause_and_rollback_with_simulated_agents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_scenario(tmp_path, capsys))
