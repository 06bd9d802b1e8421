"""``POST /tasks/{id}/retry`` and ``swarmdeploy tasks retry`` with real agent processes: a
task declined for a cause that is fixed afterwards runs when retried (issue 13)."""

from __future__ import annotations

import pytest

from swarmdeploy.cli.app import main
from swarmdeploy.client.rest import ApiError
from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e


def _post(fleet: LocalFleet, target: str, run: str = "echo retried") -> str:
    doc = fleet.api.request(
        "POST",
        "/tasks",
        json={"deploy": {"run": {"commands": [run]}, "target": {"ids": [target]}}},
    )
    return str(doc["id"])


def test_task_declined_without_trust_anchor_completes_after_fix_and_retry(
    fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    token = fleet.tokens("retry", 1)[0]
    fleet.start_agent("r1", token=token, trust_anchor=False)
    fleet.wait_online(["r1"])
    task = _post(fleet, "r1")
    fleet.wait_states(task, {"r1": "declined"})
    assert "trust anchor" in fleet.task(task)["targets"][0]["reason"]

    # While the cause is not fixed, a retry is declined again, as a new attempt.
    doc = fleet.api.retry_task(task)
    assert doc["targets"][0]["attempt"] == 1
    wait_for(
        lambda: fleet.task(task)["targets"][0]["state"] == "declined",
        timeout_s=20,
        what="the first retry declined again",
    )

    # The operator fixes the device (provisions the anchor) and retries with the CLI.
    fleet.stop_agent("r1")
    fleet.start_agent("r1")
    fleet.wait_online(["r1"])
    argv = ["--url", fleet.url, f"--api-key={fleet.admin_key}", "tasks", "retry", task]
    assert main([*argv, "--target", "r1"]) == 0
    assert f"task {task} announced again" in capsys.readouterr().out
    fleet.wait_states(task, {"r1": "exited"})
    done = fleet.task(task)
    assert done["status"] == "succeeded"
    assert done["targets"][0]["attempt"] == 2
    assert "announced again as attempt 2" in fleet.agent_log("r1")
    audit = fleet.api.request("GET", "/audit", params={"perPage": 1000})["items"]
    assert [e["target"] for e in audit if e["action"] == "task.retry"] == [task, task]


def test_retry_refuses_unknown_and_unfinished_targets(fleet: LocalFleet) -> None:
    token = fleet.tokens("retry", 1)[0]
    fleet.start_agent("r2", token=token)
    fleet.wait_online(["r2"])
    task = _post(fleet, "r2", run="exec sleep 300")
    fleet.wait_states(task, {"r2": "running"})
    with pytest.raises(ApiError) as running:
        fleet.api.retry_task(task, ["r2"])
    assert running.value.status == 409 and "r2 is running" in running.value.message
    with pytest.raises(ApiError) as nothing:
        fleet.api.retry_task(task)
    assert nothing.value.status == 409 and "no target to retry" in nothing.value.message
    with pytest.raises(ApiError) as unknown_target:
        fleet.api.retry_task(task, ["ghost"])
    assert unknown_target.value.status == 404 and "ghost" in unknown_target.value.message
    with pytest.raises(ApiError) as unknown_task:
        fleet.api.retry_task("no-such-task")
    assert unknown_task.value.status == 404
    fleet.api.request("PUT", f"/tasks/{task}/stop")
    fleet.wait_states(task, {"r2": "stopped"})
    with pytest.raises(ApiError) as stopped:
        fleet.api.retry_task(task)
    assert stopped.value.status == 409 and "stopped" in stopped.value.message
