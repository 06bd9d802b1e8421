"""Manager requests through the daemon: terminal, config, stop, de-duplication, refusals."""

from __future__ import annotations

from swarmdeploy.protocol.messages import (
    Config,
    Hint,
    Location,
    Stop,
    TerminalCommand,
    TerminalStop,
    tag_topic,
)
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig
from tests.agent.helpers import eventually, live_with_marker

S = TargetState


def terminal_pids() -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] and "sleep 31" in " ".join(proc.info["cmdline"]):
            found.append(proc.pid)
    return found


async def test_second_terminal_command_is_refused_while_one_runs(rig: Rig) -> None:
    await rig.start()
    await rig.manager.send(TARGET, TerminalCommand(request_id="c1", command="echo hi; sleep 31"))
    assert await rig.acked("c1") == (True, "started")
    await rig.output_seen("terminal", "hi")
    await rig.manager.send(TARGET, TerminalCommand(request_id="c2", command="echo no"))
    ok, message = await rig.acked("c2")
    assert not ok and message.startswith("busy")
    assert terminal_pids()
    await rig.manager.send(TARGET, TerminalStop(request_id="s1"))
    assert await rig.acked("s1") == (True, "killed")
    assert terminal_pids() == []
    await rig.manager.send(TARGET, TerminalCommand(request_id="c3", command="pwd"))
    assert (await rig.acked("c3"))[0]
    terminal_dir = str(rig.settings.data_dir / "terminal")
    await rig.output_seen("terminal", terminal_dir)
    await rig.output_seen("terminal", "exit status 0")


async def test_repeated_request_id_is_acknowledged_but_carried_out_once(rig: Rig) -> None:
    await rig.start()
    for _ in range(2):
        await rig.manager.send(TARGET, TerminalCommand(request_id="c1", command="echo once"))
        await rig.output_seen("terminal", "exit status 0")
    await eventually(lambda: len([a for _, a in rig.manager.acks if a.request_id == "c1"]) == 2)
    assert rig.outputs("terminal").count("once") == 1
    assert "c1" in rig.state().recent_requests


async def test_config_tags_are_applied_persisted_and_subscribed(rig: Rig) -> None:
    await rig.start()
    config = Config(
        request_id="k1", revision=3, tags=["lab", "arm"], name="Pi", location=Location(lat=1, lon=2)
    )
    await rig.manager.send(TARGET, config)
    assert await rig.acked("k1") == (True, "revision 3 applied")
    state = rig.state()
    assert (state.tags, state.name, state.config_revision) == (["lab", "arm"], "Pi", 3)
    assert state.location is not None and (state.location.lat, state.location.lon) == (1, 2)
    hellos = len(rig.manager.hellos)
    await rig.manager.transport.publish(tag_topic("lab"), Hint(reason="task"))
    await eventually(lambda: len(rig.manager.hellos) == hellos + 1)  # subscribed: hello again
    assert rig.manager.hellos[-1][1].config_revision == 3
    await rig.manager.send(TARGET, Config(request_id="k0", revision=2, tags=["old"]))
    ok, message = await rig.acked("k0")
    assert ok and "older" in message
    assert rig.state().tags == ["lab", "arm"]


async def test_stop_without_task_stops_the_deployment_and_the_terminal(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("t1", S.RUNNING, run=["exec sleep 300"])
    await rig.manager.send(TARGET, TerminalCommand(request_id="c1", command="sleep 31"))
    await rig.acked("c1")
    await eventually(lambda: bool(terminal_pids()))
    await rig.manager.send(TARGET, Stop(request_id="s1"))
    ok, message = await rig.acked("s1")
    assert ok and "t1" in message and "terminal" in message
    await rig.wait_state("t1", S.STOPPED)
    assert live_with_marker(rig.run_marker()) == [] and terminal_pids() == []


async def test_refused_report_with_current_stopped_stops_the_task(rig: Rig) -> None:
    await rig.start()
    rig.manager.refuse[("t1", S.RUNNING)] = S.STOPPED  # the operator stopped it meanwhile
    rig.manager.add_task("t1", run=["exec sleep 300"])
    await rig.manager.announce(TARGET, "t1")
    await eventually(lambda: S.RUNNING in rig.manager.states_of(TARGET, "t1"))
    marker = rig.run_marker()
    await eventually(lambda: rig.state().history.get("t1") is S.STOPPED)
    assert live_with_marker(marker) == []
    assert rig.state().unacked == []
