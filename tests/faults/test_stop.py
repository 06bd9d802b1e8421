"""Stop semantics through real processes (issue #10 items 5 and 6, docs/reliability.md)."""

from __future__ import annotations

import pytest

from swarmdeploy.localfleet import LocalFleet, wait_for
from tests.e2e.conftest import zip_b64

pytestmark = pytest.mark.e2e
#: Each start of the service leaves a line in $HOME/starts.
SERVICE = "echo start >> $HOME/starts; echo up; exec sleep 300"


def _agent(fleet: LocalFleet, agent_id: str) -> None:
    token = fleet.tokens(f"set-{agent_id}", 1)[0]
    fleet.start_agent(agent_id, token=token, tags=["swarm"])
    fleet.wait_online([agent_id])


def _deploy(fleet: LocalFleet, agent_id: str) -> str:
    doc = fleet.api.request(
        "POST",
        "/tasks",
        json={
            "debug": True,
            "source": {"zip": zip_b64({"a.txt": "a"})},
            "deploy": {"run": {"commands": [SERVICE]}, "target": {"ids": [agent_id]}},
        },
    )
    task = str(doc["id"])
    fleet.wait_states(task, {agent_id: "running"}, timeout_s=30)
    return task


def test_task_stopped_while_its_agent_was_offline_does_not_start_again(
    fleet: LocalFleet,
) -> None:
    _agent(fleet, "s1")
    task = _deploy(fleet, "s1")
    starts = fleet.agent_dir("s1") / "tasks" / task / "work" / "starts"
    wait_for(starts.exists, timeout_s=10, what="the service to start")
    fleet.stop_agent("s1")  # a clean shutdown: the deployment restarts at the next start
    fleet.api.request("PUT", f"/tasks/{task}/stop")
    fleet.start_agent("s1")
    fleet.wait_states(task, {"s1": "stopped"}, timeout_s=30)
    assert starts.read_text().splitlines() == ["start"]  # never started again
    restarted = [x for x in fleet.logs(task=task) if x["output"] == "agent restarted"]
    assert restarted == []


def test_stop_accepts_post_as_well_as_put(fleet: LocalFleet) -> None:
    _agent(fleet, "s2")
    task = _deploy(fleet, "s2")
    doc = fleet.api.request("POST", f"/tasks/{task}/stop")
    assert doc["requested"] == 1
    fleet.wait_states(task, {"s2": "stopped"}, timeout_s=30)
    other = _deploy(fleet, "s2")
    fleet.api.request("POST", "/targets/s2/stop")
    fleet.wait_states(other, {"s2": "stopped"}, timeout_s=30)
