"""A full disk never wedges an agent (issue #10 items 1-3, docs/reliability.md).

Each agent's data dir is a 20 MB tmpfs; the deployed commands fill it.
"""

from __future__ import annotations

import pathlib
import signal
from collections.abc import Callable

import pytest

from swarmdeploy.agent.spool import LogEntry, LogSpool
from swarmdeploy.localfleet import LocalFleet, wait_for
from tests.e2e.conftest import zip_b64
from tests.faults.conftest import SMALL_DISK

pytestmark = pytest.mark.e2e
Mount = Callable[[pathlib.Path, str], pathlib.Path]
FILL = "dd if=/dev/zero of=fill.bin bs=1M count=40"
ENOSPC = "No space left on device"


def _agent(fleet: LocalFleet, mount: Mount, agent_id: str) -> None:
    mount(fleet.agent_dir(agent_id), "20m")
    token = fleet.tokens(f"set-{agent_id}", 1)[0]
    fleet.start_agent(agent_id, token=token, tags=["swarm"], extra_args=SMALL_DISK)
    fleet.wait_online([agent_id])


def _post(fleet: LocalFleet, agent_id: str, install: list[str], run: list[str]) -> str:
    deploy: dict[str, object] = {"target": {"ids": [agent_id]}}
    if install:
        deploy["install"] = {"commands": install}
    if run:
        deploy["run"] = {"commands": run}
    doc = fleet.api.request(
        "POST",
        "/tasks",
        json={"debug": True, "source": {"zip": zip_b64({"a.txt": "a"})}, "deploy": deploy},
    )
    return str(doc["id"])


def _reason(fleet: LocalFleet, task: str, agent_id: str) -> str:
    targets = fleet.task(task)["targets"]
    return str(next(t.get("reason") or "" for t in targets if t["id"] == agent_id))


def test_install_filling_the_disk_fails_the_task_and_the_agent_goes_on(
    small_disk: Mount, fleet: LocalFleet
) -> None:
    _agent(fleet, small_disk, "d1")
    task = _post(fleet, "d1", [FILL], ["echo never"])
    fleet.wait_states(task, {"d1": "install_failed"}, timeout_s=30)
    assert ENOSPC in _reason(fleet, task, "d1")
    tasks_dir = fleet.agent_dir("d1") / "tasks"
    wait_for(
        lambda: not tasks_dir.exists() or not any(tasks_dir.iterdir()),
        timeout_s=10,
        what="the failed task's folder to be removed",
    )
    # The agent is not wedged: the next task is accepted and runs.
    nxt = _post(fleet, "d1", [], ["echo after-full"])
    fleet.wait_states(nxt, {"d1": "exited"}, timeout_s=30)
    wait_for(lambda: fleet.logs(task=nxt, output="after-full"), timeout_s=10, what="output")


def test_agent_killed_with_a_full_disk_restarts_and_reports(
    small_disk: Mount, fleet: LocalFleet
) -> None:
    _agent(fleet, small_disk, "d2")
    task = _post(fleet, "d2", ["sleep 30"], [])
    fleet.wait_states(task, {"d2": "installing"}, timeout_s=30)
    fleet.stop_agent("d2", signal.SIGKILL)
    hog = fleet.agent_dir("d2") / "hog.bin"
    with hog.open("wb", buffering=0) as fh, pytest.raises(OSError):  # fill every byte left
        while True:
            fh.write(b"\0" * (1 << 20))
    fleet.start_agent("d2", extra_args=SMALL_DISK)
    fleet.wait_states(task, {"d2": "install_failed"}, timeout_s=30)
    assert "interrupted" in _reason(fleet, task, "d2")
    proc = fleet.agents["d2"]
    assert proc.poll() is None, fleet.agent_log("d2")[-3000:]
    assert "Traceback" not in fleet.agent_log("d2")
    fleet.wait_online(["d2"])
    wait_for(
        lambda: (fleet.target("d2").get("health") or {}).get("disk_low"),
        timeout_s=60,  # seconds normally; a loaded machine (CI at load 34) stretches them
        what="the agent to tell the manager that its disk is full",
    )


def test_service_filling_the_disk_can_be_stopped_and_lost_lines_are_counted(
    small_disk: Mount, fleet: LocalFleet
) -> None:
    _agent(fleet, small_disk, "d3")
    run = "i=0; while true; do i=$((i+1)); echo line-$i; dd if=/dev/zero of=$HOME/f$i bs=1M count=1 2>/dev/null; sleep 0.01; done"  # noqa: E501
    task = _post(fleet, "d3", [], [run])
    fleet.wait_states(task, {"d3": "running"}, timeout_s=30)
    home = fleet.agent_dir("d3") / "tasks" / task / "work"
    wait_for(lambda: len(list(home.glob("f*"))) >= 18, timeout_s=30, what="the disk to fill")
    wait_for(  # the service goes on writing lines to a full disk: those are lost
        lambda: "counted as lost" in fleet.agent_log("d3"),
        timeout_s=20,
        what="a line the spool could not take",
    )
    fleet.api.request("PUT", f"/tasks/{task}/stop")
    fleet.wait_states(task, {"d3": "stopped"}, timeout_s=30)
    lost = wait_for(
        lambda: [x for x in fleet.logs(task=task) if "lines lost: disk full" in x["output"]],
        timeout_s=20,
        what=f"the lost-lines marker in {[x['output'] for x in fleet.logs(task=task)][-5:]}",
    )
    assert lost[0]["command"] == "$agent"


def test_spooled_lines_keep_flowing_while_the_disk_is_full(
    small_disk: Mount, tmp_path: pathlib.Path
) -> None:
    disk = small_disk(tmp_path / "disk", "2m")
    spool = LogSpool(disk / "spool.bin")
    for i in range(200):
        spool.append(LogEntry(i, "t", "run", "c", f"line-{i}"))
    first = spool.pending(limit=100)
    with (disk / "hog.bin").open("wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 4096)
    assert spool.ack(first[-1].seq) == 100  # no room for a compacted copy: acked in memory
    rest = spool.pending(limit=500)
    assert [x.entry.output for x in rest] == [f"line-{i}" for i in range(100, 200)]
    assert spool.ack(rest[-1].seq) == 100 and len(spool) == 0
    assert not [p.name for p in disk.iterdir() if ".tmp-" in p.name]  # no partial copy left
    spool.close()
