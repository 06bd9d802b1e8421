"""Staged rollouts against the fleet simulator (real manager process, real simulated agents
over CurveZMQ on loopback): a rollout of 100 devices in groups 10 % / rest with an error
threshold of 5 % halts in its first group when every install fails, and no device of the
later group is announced; with no failures it completes group by group; a manager restarted
during a soak goes on from the stored state."""

from __future__ import annotations

import base64
import io
import pathlib
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e

AGENTS = 100
FIRST = 10  # 10 % of 100


@pytest.fixture
def fleet(tmp_path: pathlib.Path) -> Iterator[LocalFleet]:
    """A started manager."""
    limits = ["--registration-burst", str(AGENTS + 10), "--registration-rate", "10000"]
    with LocalFleet(tmp_path, manager_args=limits) as f:
        f.start_manager(timeout_s=60)
        yield f


def _simulate(fleet: LocalFleet, prefix: str, failure_rate: str) -> subprocess.Popen[str]:
    out = fleet.root / f"simulate-{prefix}.log"
    cmd = [sys.executable, "-m", "swarmdeploy", "simulate", "--manager", fleet.url, "--plain"]
    cmd += ["--trust-anchor", str(fleet.manager_dir / "ca.pem")]
    cmd += ["--agents", str(AGENTS), "--token-set", prefix, f"--api-key={fleet.admin_key}"]
    cmd += ["--failure-rate", failure_rate, "--install-time", "0.2", "--tags", prefix]
    cmd += ["--id-prefix", f"{prefix}-"]
    with out.open("w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _deploy(fleet: LocalFleet, tag: str, first: dict[str, Any]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.txt", "v1\n")
    descriptor = {
        "source": {"zip": base64.b64encode(buf.getvalue()).decode()},
        "deploy": {"run": {"commands": ["true"]}, "target": {"tags": [tag]}},
        "rollout": {
            "groups": [
                {"percent": 10, "successThreshold": 100, "errorThreshold": 5, **first},
                {"name": "rest", "successThreshold": 95, "errorThreshold": 5},
            ]
        },
    }
    task_id: str = fleet.api.request("POST", "/tasks", json=descriptor)["id"]
    return task_id


def _rollout(fleet: LocalFleet, task_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = fleet.task(task_id)["rollout"]
    return doc


def _ids(prefix: str) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(1, AGENTS + 1)]


def test_every_install_failing_halts_in_the_first_group(fleet: LocalFleet) -> None:
    proc = _simulate(fleet, "bad", "1.0")
    ids = _ids("bad")
    try:
        fleet.wait_online(ids, timeout_s=120)
        task_id = _deploy(fleet, "bad", {})
        first, rest = ids[:FIRST], ids[FIRST:]
        wait_for(lambda: _rollout(fleet, task_id)["state"] == "halted", timeout_s=120,
                 what="rollout halted")  # fmt: skip
        rollout = _rollout(fleet, task_id)
        group = rollout["groups"][0]
        assert rollout["currentGroup"] == 0
        assert "error threshold of 5 %" in rollout["reason"]
        assert group["size"] == FIRST and group["failed"] * 100 > 5 * FIRST
        states = fleet.states(task_id)
        assert {states[t] for t in rest} == {"pending"}
        assert rollout["groups"][1] == {**rollout["groups"][1], "size": 90, "notAnnounced": 90}
        # the halted rollout stays halted: still nothing of the rest is announced
        fleet.wait_states(task_id, dict.fromkeys(first, "install_failed"), timeout_s=120)
        assert {fleet.states(task_id)[t] for t in rest} == {"pending"}
        assert _rollout(fleet, task_id)["state"] == "halted"
    finally:
        _stop(proc)


def test_no_failures_complete_group_by_group(fleet: LocalFleet) -> None:
    proc = _simulate(fleet, "good", "0.0")
    ids = _ids("good")
    try:
        fleet.wait_online(ids, timeout_s=120)
        task_id = _deploy(fleet, "good", {})
        wait_for(lambda: _rollout(fleet, task_id)["state"] == "completed", timeout_s=180,
                 what="rollout completed")  # fmt: skip
        doc = fleet.task(task_id)
        rows = {t["id"]: t for t in doc["targets"]}
        first, rest = ids[:FIRST], ids[FIRST:]
        assert doc["rollout"]["currentGroup"] == 1
        assert [g["size"] for g in doc["rollout"]["groups"]] == [FIRST, AGENTS - FIRST]
        wait_for(lambda: set(fleet.states(task_id).values()) == {"exited"}, timeout_s=120,
                 what="every device exited")  # fmt: skip
        rows = {t["id"]: t for t in fleet.task(task_id)["targets"]}
        # the rest was announced only after the whole first group had succeeded
        assert max(rows[t]["updatedAt"] for t in first) <= min(rows[t]["updatedAt"] for t in rest)
    finally:
        _stop(proc)


def test_manager_restart_during_a_soak_resumes_from_the_stored_state(fleet: LocalFleet) -> None:
    proc = _simulate(fleet, "soak", "0.0")
    ids = _ids("soak")
    try:
        fleet.wait_online(ids, timeout_s=120)
        task_id = _deploy(fleet, "soak", {"soak": 4})
        wait_for(lambda: _rollout(fleet, task_id)["soakUntil"] is not None, timeout_s=120,
                 what="first group soaking")  # fmt: skip
        assert {fleet.states(task_id)[t] for t in ids[FIRST:]} == {"pending"}
        fleet.stop_manager()
        fleet.start_manager(timeout_s=60)
        assert _rollout(fleet, task_id)["currentGroup"] == 0
        wait_for(lambda: _rollout(fleet, task_id)["state"] == "completed", timeout_s=180,
                 what="rollout completed after the restart")  # fmt: skip
        wait_for(lambda: set(fleet.states(task_id).values()) == {"exited"}, timeout_s=180,
                 what="every device exited")  # fmt: skip
    finally:
        _stop(proc)
