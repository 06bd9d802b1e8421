"""Deployments through real processes: manager, agents, CurveZMQ on loopback."""

from __future__ import annotations

import signal

import pytest

from swarmdeploy.localfleet import LocalFleet, processes_below, running_below, wait_for
from tests.e2e.conftest import zip_b64

pytestmark = pytest.mark.e2e

COUNT_PY = """#!/usr/bin/env python3
import json
with open('config.json') as f:
    config = json.load(f)
print('loaded config file: %s' % config)
for i in range(1, config['total'] + 1):
    print('hello %d' % i)
"""


def _start(fleet: LocalFleet, ids_tags: dict[str, list[str]]) -> None:
    tokens = fleet.tokens("e2e", len(ids_tags))
    for (agent_id, tags), token in zip(ids_tags.items(), tokens, strict=True):
        fleet.start_agent(agent_id, token=token, tags=tags)
    fleet.wait_online(list(ids_tags))


def _post(fleet: LocalFleet, descriptor: dict[str, object]) -> str:
    doc = fleet.api.request("POST", "/tasks", json=descriptor)
    return str(doc["id"])


def test_deploy_by_tag_and_id_runs_everywhere_and_output_is_logged(fleet: LocalFleet) -> None:
    _start(fleet, {"a1": ["swarm"], "a2": ["swarm"], "a3": ["lab"]})
    task = _post(
        fleet,
        {
            "debug": True,
            "source": {"zip": zip_b64({"count.py": COUNT_PY, "config.json": '{"total": 3}'})},
            "deploy": {
                "install": {"commands": ["chmod +x count.py"]},
                "run": {"commands": ["./count.py"]},
                "target": {"ids": ["a3"], "tags": ["swarm"]},
            },
        },
    )
    states = fleet.wait_states(task, {"a1": "exited", "a2": "exited", "a3": "exited"})
    assert set(states) == {"a1", "a2", "a3"}

    def all_output() -> bool:
        lines = fleet.logs(task=task, output="hello 3")
        return {line["target"] for line in lines} == {"a1", "a2", "a3"}

    wait_for(all_output, timeout_s=20, what="'hello 3' from every agent")
    assert fleet.task(task)["status"] == "succeeded"


def test_install_failure_keeps_previous_deployment_running(fleet: LocalFleet) -> None:
    _start(fleet, {"b1": ["swarm"]})
    first = _post(
        fleet,
        {
            "deploy": {
                "run": {"commands": ["echo v1-started; exec sleep 300"]},
                "target": {"ids": ["b1"]},
            }
        },
    )
    fleet.wait_states(first, {"b1": "running"})
    second = _post(
        fleet,
        {
            "deploy": {
                "install": {"commands": ["echo broken >&2; exit 3"]},
                "run": {"commands": ["echo v2; exec sleep 300"]},
                "target": {"ids": ["b1"]},
            }
        },
    )
    fleet.wait_states(second, {"b1": "install_failed"})
    assert fleet.states(first) == {"b1": "running"}
    sleepers = running_below(fleet.root, "sleep")
    assert len(sleepers) == 1


def test_stop_leaves_no_process_behind(fleet: LocalFleet) -> None:
    _start(fleet, {"c1": ["swarm"]})
    task = _post(
        fleet,
        {
            "deploy": {
                "run": {
                    "commands": [
                        "sleep 300 & sleep 300",
                        "trap '' TERM; while true; do sleep 1; done",
                    ]
                },
                "target": {"ids": ["c1"]},
            }
        },
    )
    fleet.wait_states(task, {"c1": "running"})
    wait_for(
        lambda: len(processes_below(fleet.agent_dir("c1") / "tasks")) >= 3,
        timeout_s=10,
        what="the run commands to start",
    )
    fleet.api.request("PUT", f"/tasks/{task}/stop")
    fleet.wait_states(task, {"c1": "stopped"})
    wait_for(
        lambda: not processes_below(fleet.agent_dir("c1") / "tasks"),
        timeout_s=10,
        what="every deployed process to be gone",
    )


def test_agent_sigkilled_restarts_run_commands_exactly_once(fleet: LocalFleet) -> None:
    _start(fleet, {"d1": ["swarm"]})
    task = _post(
        fleet,
        {"deploy": {"run": {"commands": ["exec sleep 300"]}, "target": {"ids": ["d1"]}}},
    )
    fleet.wait_states(task, {"d1": "running"})

    def sleepers() -> list[int]:
        return sorted(running_below(fleet.agent_dir("d1"), "sleep"))

    pid = wait_for(lambda: sleepers(), timeout_s=10, what="the run command")[0]
    for _restart in range(2):
        assert fleet.stop_agent("d1", signal.SIGKILL) == -signal.SIGKILL
        fleet.start_agent("d1")
        fleet.wait_online(["d1"])

        def replaced(old: int = pid) -> list[int] | None:
            pids = sleepers()
            return pids if len(pids) == 1 and pids[0] != old else None

        pid = wait_for(replaced, timeout_s=20, what="one new run process after restart")[0]
        assert fleet.states(task) == {"d1": "running"}
    assert len(sleepers()) == 1


def test_offline_agent_receives_task_when_it_comes_back(fleet: LocalFleet) -> None:
    _start(fleet, {"e1": ["swarm"]})
    fleet.stop_agent("e1")
    wait_for(lambda: not fleet.target("e1")["online"], timeout_s=20, what="e1 offline")
    task = _post(
        fleet,
        {"deploy": {"run": {"commands": ["echo late"]}, "target": {"tags": ["swarm"]}}},
    )
    assert fleet.states(task) == {"e1": "pending"}
    fleet.start_agent("e1")
    fleet.wait_states(task, {"e1": "exited"})


def test_manager_restart_mid_deployment_loses_nothing(fleet: LocalFleet) -> None:
    _start(fleet, {"f1": ["swarm"], "f2": ["swarm"]})
    task = _post(
        fleet,
        {
            "debug": True,
            "deploy": {
                "run": {"commands": ["for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.5; done"]},
                "target": {"tags": ["swarm"]},
            },
        },
    )
    fleet.wait_states(task, {"f1": "running", "f2": "running"})
    fleet.stop_manager(signal.SIGKILL)
    fleet.start_manager()
    fleet.wait_states(task, {"f1": "exited", "f2": "exited"})

    def every_tick_once() -> bool:
        lines = fleet.logs(task=task, stage="run")
        ticks = [(x["target"], x["output"]) for x in lines if x["output"].startswith("tick-")]
        return len(ticks) == 12 and len(set(ticks)) == 12

    wait_for(every_tick_once, timeout_s=20, what="each tick line stored exactly once")


def test_declined_when_disk_limit_would_be_exceeded(fleet: LocalFleet) -> None:
    token = fleet.tokens("small", 1)[0]
    fleet.start_agent("g1", token=token, tags=["swarm"], extra_args=["--max-data-bytes", "64K"])
    fleet.wait_online(["g1"])
    big = zip_b64({"blob.bin": "x" * 300_000})
    task = _post(
        fleet,
        {
            "source": {"zip": big},
            "deploy": {"run": {"commands": ["true"]}, "target": {"ids": ["g1"]}},
        },
    )
    fleet.wait_states(task, {"g1": "declined"})
    row = fleet.task(task)["targets"][0]
    assert "disk" in row["reason"]


def test_hostile_archive_rejected_nothing_written_outside(fleet: LocalFleet) -> None:
    _start(fleet, {"h1": ["swarm"]})
    task = _post(
        fleet,
        {
            "source": {"zip": zip_b64({"../../escape.txt": "owned"})},
            "deploy": {"run": {"commands": ["true"]}, "target": {"ids": ["h1"]}},
        },
    )
    fleet.wait_states(task, {"h1": "install_failed"})
    assert not (fleet.root / "agents" / "escape.txt").exists()
    assert not (fleet.agent_dir("h1") / "escape.txt").exists()
