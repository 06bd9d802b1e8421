"""Apps and standing releases through real processes (issue 14): manager, agents, CurveZMQ."""

from __future__ import annotations

import json
import signal

import pytest

from swarmdeploy.client.rest import ApiError
from swarmdeploy.localfleet import LocalFleet, running_below, wait_for

pytestmark = pytest.mark.e2e


def _start(fleet: LocalFleet, ids_tags: dict[str, list[str]], name: str = "e2e") -> None:
    tokens = fleet.tokens(name, len(ids_tags))
    for (agent_id, tags), token in zip(ids_tags.items(), tokens, strict=True):
        fleet.start_agent(agent_id, token=token, tags=tags)
    fleet.wait_online(list(ids_tags))


def _post(fleet: LocalFleet, descriptor: dict[str, object]) -> str:
    return str(fleet.api.request("POST", "/tasks", json=descriptor)["id"])


def _release(app: str, seconds: int, target: dict[str, object], version: str) -> dict[str, object]:
    return {
        "app": app,
        "version": version,
        "deploy": {"run": {"commands": [f"exec sleep {seconds}"]}, "target": target},
    }


def _sleepers(fleet: LocalFleet, agent_id: str, seconds: int) -> list[int]:
    return sorted(running_below(fleet.agent_dir(agent_id), f"sleep {seconds}"))


def _agent_tags(fleet: LocalFleet, agent_id: str) -> list[str]:
    """The tags the agent applied (its persisted state)."""
    state = json.loads((fleet.agent_dir(agent_id) / "state.json").read_text())
    return list(state["tags"])


def test_two_apps_run_side_by_side_and_restart_exactly_once(fleet: LocalFleet) -> None:
    _start(fleet, {"m1": ["cam"]})
    detector = _post(fleet, _release("detector", 301, {"ids": ["m1"]}, "1.0"))
    uploader = _post(fleet, _release("uploader", 302, {"ids": ["m1"]}, "0.1"))
    fleet.wait_states(detector, {"m1": "running"})
    fleet.wait_states(uploader, {"m1": "running"})
    up_pid = wait_for(lambda: _sleepers(fleet, "m1", 302), timeout_s=10, what="uploader")[0]

    # a new release of one app replaces only that app
    detector2 = _post(fleet, _release("detector", 303, {"ids": ["m1"]}, "2.0"))
    fleet.wait_states(detector2, {"m1": "running"})
    fleet.wait_states(detector, {"m1": "stopped"})
    wait_for(lambda: not _sleepers(fleet, "m1", 301), timeout_s=10, what="old detector gone")
    assert fleet.states(uploader) == {"m1": "running"}
    assert _sleepers(fleet, "m1", 302) == [up_pid]

    apps = {a["app"]: a for a in fleet.api.request("GET", "/targets/m1/apps")["items"]}
    assert apps["detector"]["running"] == {"taskId": detector2, "version": "2.0"}
    assert apps["uploader"]["running"]["taskId"] == uploader
    assert not apps["detector"]["behind"]

    # an agent killed hard restarts each app's run command exactly once
    new_pid = wait_for(lambda: _sleepers(fleet, "m1", 303), timeout_s=10, what="detector 2")[0]
    old = {up_pid, new_pid}
    assert fleet.stop_agent("m1", signal.SIGKILL) == -signal.SIGKILL
    fleet.start_agent("m1")
    fleet.wait_online(["m1"])

    def one_each() -> list[int] | None:
        pids = _sleepers(fleet, "m1", 302) + _sleepers(fleet, "m1", 303)
        return pids if len(pids) == 2 and not old.intersection(pids) else None

    wait_for(one_each, timeout_s=20, what="one new process per app after restart")
    assert not _sleepers(fleet, "m1", 301)

    # a stop of one app leaves the other running
    fleet.api.request("PUT", "/targets/m1/apps/detector/stop")
    fleet.wait_states(detector2, {"m1": "stopped"})
    wait_for(lambda: not _sleepers(fleet, "m1", 303), timeout_s=10, what="detector stopped")
    assert len(_sleepers(fleet, "m1", 302)) == 1
    assert fleet.states(uploader) == {"m1": "running"}
    with pytest.raises(ApiError):
        fleet.api.request("PUT", "/targets/m1/apps/nothing/stop")


def test_standing_release_reaches_late_and_retagged_devices(fleet: LocalFleet) -> None:
    follow = {"tags": ["camera"], "follow": True}
    # accepted with no matching device (it waits) instead of 422
    task = _post(fleet, _release("detector", 311, follow, "2.3"))
    assert fleet.states(task) == {}
    with pytest.raises(ApiError):
        _post(fleet, _release("other", 312, {"tags": ["camera"]}, "1"))  # not standing: 422

    _start(fleet, {"n1": ["camera"], "n2": ["gateway"]})
    fleet.wait_states(task, {"n1": "running"})  # registered after the task: gets it
    fleet.api.request("PUT", "/targets/n2", json={"tags": ["gateway", "camera"]})
    fleet.wait_states(task, {"n1": "running", "n2": "running"})  # re-tagged: gets it

    # a device that stops matching keeps running (no remove), across an agent restart too
    fleet.api.request("PUT", "/targets/n2", json={"tags": ["gateway"]})
    wait_for(lambda: _agent_tags(fleet, "n2") == ["gateway"], timeout_s=20, what="n2's tags")
    pid = wait_for(lambda: _sleepers(fleet, "n2", 311), timeout_s=10, what="n2's detector")[0]
    fleet.stop_agent("n2")
    fleet.start_agent("n2")
    fleet.wait_online(["n2"])

    def restarted() -> list[int] | None:
        pids = _sleepers(fleet, "n2", 311)
        return pids if len(pids) == 1 and pids[0] != pid else None

    wait_for(restarted, timeout_s=20, what="n2's detector restarted once")
    app = fleet.api.request("GET", "/apps/detector")
    assert app["releases"][0]["standing"] is True
    assert {d["targetId"]: d["running"]["taskId"] for d in app["devices"]} == {
        "n1": task,
        "n2": task,
    }
    assert fleet.states(task) == {"n1": "running", "n2": "running"}
    listed = fleet.api.request("GET", "/apps")["items"]
    assert [(a["name"], a["devices"], a["behind"]) for a in listed] == [("detector", 2, 0)]

    # a manager restart changes nothing
    fleet.stop_manager()
    fleet.start_manager()
    fleet.wait_online(["n1", "n2"])
    assert fleet.states(task) == {"n1": "running", "n2": "running"}


def test_standing_release_with_remove_stops_on_devices_that_leave(fleet: LocalFleet) -> None:
    _start(fleet, {"r1": ["camera", "lab"], "r2": ["camera"]})
    task = _post(
        fleet,
        _release("probe", 321, {"select": "camera,!lab", "follow": True, "remove": True}, "1"),
    )
    fleet.wait_states(task, {"r2": "running"})
    assert "r1" not in fleet.states(task)  # negated by !lab
    fleet.api.request("PUT", "/targets/r2", json={"tags": ["camera", "lab"]})
    fleet.wait_states(task, {"r2": "stopped"})
    wait_for(lambda: not _sleepers(fleet, "r2", 321), timeout_s=10, what="probe stopped")
    fleet.api.request("PUT", "/targets/r1", json={"tags": ["camera"]})
    fleet.wait_states(task, {"r1": "running", "r2": "stopped"})
