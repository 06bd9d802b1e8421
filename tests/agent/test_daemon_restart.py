"""Agent restarts (docs/adr/0003): run commands again exactly once, leftovers killed,
interrupted stages reported."""

from __future__ import annotations

import os
import subprocess

from swarmdeploy.agent.process import RUN_ID_VAR
from swarmdeploy.agent.state import StageRun
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig
from tests.agent.helpers import eventually, kill_marked_now, live_commands, live_with_marker

S = TargetState
RUN = ["exec sleep 300", "exec sleep 301"]


async def running_deployment(rig: Rig) -> str:
    """Start the daemon with task t1 (:data:`RUN`) running; returns its run marker."""
    await rig.start()
    await rig.deploy("t1", S.RUNNING, run=RUN)
    marker = rig.run_marker()
    await eventually(lambda: len(live_commands(marker)) == 2)
    return marker


async def test_daemon_restart_starts_the_run_commands_again_exactly_once(rig: Rig) -> None:
    first = await running_deployment(rig)
    await rig.stop()
    assert live_with_marker(first) == []
    await rig.start()
    dep = rig.deployment()
    assert dep.run_id not in (None, first)
    second = dep.run_id or ""
    await eventually(lambda: len(live_commands(second)) == 2)
    await rig.stop()
    await rig.start()
    third = (rig.state().deployment or dep).run_id or ""
    await eventually(lambda: len(live_commands(third)) == 2)
    assert live_with_marker(first) == live_with_marker(second) == []
    assert rig.manager.state(TARGET, "t1") is S.RUNNING
    assert rig.state().unacked == []  # the restart needed no new report


async def test_leftovers_of_a_crashed_agent_are_killed_before_the_restart(rig: Rig) -> None:
    marker = await running_deployment(rig)
    await rig.stop()
    # What an agent killed by SIGKILL leaves behind: processes carrying the last marker.
    leftover = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
        ["sleep", "302"], env={**os.environ, RUN_ID_VAR: marker}, start_new_session=True
    )
    try:
        state = rig.state()
        assert state.deployment is not None
        state.deployment.process_groups = [leftover.pid]
        rig.save(state)
        await rig.start()
        assert leftover.wait(timeout=5) is not None  # killed (and reaped here)
        new = (rig.state().deployment or state.deployment).run_id or ""
        await eventually(lambda: len(live_commands(new)) == 2)
    finally:
        kill_marked_now(marker)
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


async def test_stopped_deployment_is_not_restarted(rig: Rig) -> None:
    from swarmdeploy.protocol.messages import Stop

    marker = await running_deployment(rig)
    await rig.manager.send(TARGET, Stop(request_id="s1", task_id="t1"))
    await rig.wait_state("t1", S.STOPPED)
    await rig.stop()
    await rig.start()
    dep = rig.deployment()
    assert dep.stopped and dep.run_id == marker
    assert live_with_marker(marker) == []


async def test_install_interrupted_by_an_agent_death_is_reported_failed(rig: Rig) -> None:
    state = rig.state()
    state.history["t9"] = S.INSTALLING
    state.stage_run = StageRun(task_id="t9", stage="install", run_id="a" * 24)
    rig.save(state)
    await rig.start()
    await rig.wait_state("t9", S.INSTALL_FAILED)
    assert "interrupted by an agent restart" in rig.reason("t9")
    assert rig.state().stage_run is None


async def test_crash_mid_install_leaves_the_old_deployment_running_after_restart(
    rig: Rig,
) -> None:
    marker = await running_deployment(rig)
    await rig.deploy("t2", S.INSTALLING, run=["true"], install=["exec sleep 303"])
    await rig.stop()  # the install is killed with the agent
    await rig.start()
    await rig.wait_state("t2", S.INSTALL_FAILED)
    dep = rig.deployment()
    assert dep.task_id == "t1" and dep.run_id != marker
    await eventually(lambda: len(live_commands(dep.run_id or "")) == 2)
