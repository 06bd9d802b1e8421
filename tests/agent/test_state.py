"""Persisted agent state and the restart-exactly-once plan."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdeploy.agent.errors import StateCorruptError, StateSchemaError
from swarmdeploy.agent.state import (
    HISTORY_LIMIT,
    REQUEST_LIMIT,
    AgentState,
    Deployment,
    HealthPhase,
    Location,
    Registration,
    StageRun,
    kill_leftovers,
    load_state,
    resume_plan,
    save_state,
)
from swarmdeploy.protocol.states import TargetState
from tests.agent.helpers import kill_marked_now, live_in_group, live_with_marker


def _state(tmp_path: Path, commands: list[str] | None = None) -> AgentState:
    return AgentState(
        agent_id="dev-1",
        tags=["a"],
        location=Location(50.7, 7.2),
        registration=Registration(
            manager_url="http://127.0.0.1:8080",
            server_public_key="k" * 40,
            pub_port=5556,
            sub_port=5557,
            registered_at_ms=1,
        ),
        deployment=Deployment(
            task_id="t1",
            install_dir=str(tmp_path),
            run_commands=commands or ["sleep 300"],
            auto_restart=True,
        ),
    )


def test_save_load_roundtrip_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = _state(tmp_path)
    state.report("t1", TargetState.RUNNING)
    save_state(path, state)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_state(path) == state
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left
    assert b'"running"' in path.read_bytes()  # states are stored by name


def test_missing_state_is_none(tmp_path: Path) -> None:
    assert load_state(tmp_path / "state.json") is None


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[]", b'{"schema": 1}', b'{"schema": 1, "agent_id": 5}', b'{"x": 1}'],
)
def test_damaged_state_raises_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateCorruptError, match="state"):
        load_state(path)


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b'{"schema": 99, "agent_id": "x", "future": true}')
    with pytest.raises(StateSchemaError, match="newer agent"):
        load_state(path)


def test_history_is_bounded_and_detects_duplicates() -> None:
    state = AgentState(agent_id="x")
    for i in range(HISTORY_LIMIT + 5):
        state.remember(f"t{i}", TargetState.EXITED)
    assert len(state.history) == HISTORY_LIMIT
    assert not state.seen("t0") and state.seen(f"t{HISTORY_LIMIT + 4}")


def test_reports_kept_until_acknowledged() -> None:
    state = AgentState(agent_id="x")
    state.report("t1", TargetState.ACCEPTED)
    state.report("t2", TargetState.DECLINED, "no disk")
    assert state.ack_report("t1", TargetState.ACCEPTED)
    assert not state.ack_report("t1", TargetState.ACCEPTED)
    assert [(r.task_id, r.state, r.reason) for r in state.unacked] == [
        ("t2", TargetState.DECLINED, "no disk")
    ]


def test_request_ids_deduplicated_and_bounded() -> None:
    state = AgentState(agent_id="x")
    assert state.remember_request("r1") and not state.remember_request("r1")
    for i in range(REQUEST_LIMIT + 10):
        state.remember_request(f"q{i}")
    assert len(state.recent_requests) == REQUEST_LIMIT
    assert state.remember_request("r1")  # long forgotten


def test_resume_plan_restarts_unfinished_commands(tmp_path: Path) -> None:
    state = _state(tmp_path, ["a", "b", "c"])
    assert state.deployment is not None
    state.deployment.run_id = "r1"
    state.deployment.process_groups = [11, 12]
    state.deployment.finished = [1]
    state.stage_run = StageRun(task_id="t2", stage="install", run_id="r2")
    plan = resume_plan(state)
    assert plan.start_commands == (0, 2)
    assert plan.kill_run_ids == ("r1", "r2") and plan.kill_groups == (11, 12)
    assert plan.interrupted == state.stage_run


def test_resume_plan_after_operator_stop_starts_nothing(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert state.deployment is not None
    state.deployment.stopped = True
    assert resume_plan(state).start_commands == ()
    assert resume_plan(AgentState(agent_id="x")).deployment is None


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process group that is not ours."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


async def test_kill_leftovers_spares_unmarked_group_with_recorded_number(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    state = _state(tmp_path)
    assert state.deployment is not None
    state.deployment.run_id = "nobody-has-this"
    state.deployment.process_groups = [stranger.pid]  # reused number, not ours
    assert await kill_leftovers(resume_plan(state), 0.2)
    assert live_in_group(stranger.pid) == [stranger.pid]


# A minimal daemon start: the sequence the real daemon follows (see ResumePlan).
_AGENT = """
import asyncio, sys
from pathlib import Path
from swarmdeploy.agent.process import child_env
from swarmdeploy.agent.runner import Runner, new_run_id
from swarmdeploy.agent.state import kill_leftovers, load_state, resume_plan, save_state
from swarmdeploy.agent.supervise import ProcessState, SupervisionConfig

async def main(path):
    state = load_state(path)
    plan = resume_plan(state)
    assert await kill_leftovers(plan, 0.3)
    dep = state.deployment
    dep.run_id, dep.process_groups = new_run_id(), []
    save_state(path, state)  # the marker is durable before any process carries it
    commands = [dep.run_commands[i] for i in plan.start_commands]
    up = asyncio.Event()
    running = set()
    def on_event(event):
        if event.new is ProcessState.RUNNING:
            running.add(event.index)
            if len(running) == len(commands):
                up.set()
    runner = Runner(commands, cwd=Path(dep.install_dir), env=child_env(),
                    config=SupervisionConfig(grace_s=0.3), on_line=lambda line: None,
                    on_event=on_event, run_id=dep.run_id)
    runner.start()
    await up.wait()
    dep.process_groups = runner.process_groups
    save_state(path, state)
    print(dep.run_id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main(Path(sys.argv[1])))
"""


def _start_agent_then_sigkill(path: Path) -> str:
    agent = subprocess.Popen([sys.executable, "-c", _AGENT, str(path)], stdout=subprocess.PIPE)
    try:
        assert agent.stdout is not None
        run_id = agent.stdout.readline().decode().strip()
    finally:
        agent.kill()  # crash: no clean-up at all
        agent.wait()
        assert agent.stdout is not None
        agent.stdout.close()
    assert run_id
    return run_id


async def test_two_consecutive_restarts_never_leave_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, _state(tmp_path, ["sleep 300", "sleep 300 & sleep 300"]))
    run_ids: list[str] = []
    try:
        for _ in range(3):  # first start, then two restarts after SIGKILL
            run_ids.append(_start_agent_then_sigkill(path))
            # Exactly one generation alive: sh+sleep and sh+2 sleeps of the latest run.
            assert len(live_with_marker(run_ids[-1])) == 5
            assert all(live_with_marker(old) == [] for old in run_ids[:-1])
        assert len(set(run_ids)) == 3
        state = load_state(path)
        assert state is not None and state.deployment is not None
        assert len(state.deployment.process_groups) == 2
        assert await kill_leftovers(resume_plan(state), 0.3)
        assert live_with_marker(run_ids[-1]) == []
    finally:
        for run_id in run_ids:
            kill_marked_now(run_id)


def test_resume_plan_kills_every_app_then_starts_each_once(tmp_path: Path) -> None:
    state = _state(tmp_path, ["a"])
    assert state.deployment is not None
    state.deployment.run_id = "r1"
    state.deployment.process_groups = [11]
    state.set_deployment(
        "detector",
        Deployment(
            task_id="t9",
            install_dir="/x",
            run_commands=["d1", "d2"],
            run_id="r9",
            process_groups=[91, 92],
            finished=[0],
        ),
    )
    state.set_deployment(
        "stopped-app",
        Deployment(task_id="t8", install_dir="/y", run_commands=["s"], run_id="r8", stopped=True),
    )
    plan = resume_plan(state)
    assert plan.kill_run_ids == ("r1", "r9", "r8")
    assert plan.kill_groups == (11, 91, 92)
    assert plan.app_starts == (("default", (0,)), ("detector", (1,)))
    assert plan.start_commands == (0,)


def test_state_with_apps_round_trips(tmp_path: Path) -> None:
    state = AgentState(agent_id="x")
    state.set_deployment("detector", Deployment(task_id="t1", install_dir="/a"))
    path = tmp_path / "state.json"
    save_state(path, state)
    loaded = load_state(path)
    assert loaded is not None and loaded.deployment_of("detector") == state.apps["detector"]
    assert loaded.deployment_of("default") is None
    assert [app for app, _ in loaded.deployments()] == ["detector"]


def test_schema_1_state_reads_as_one_default_app(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(
        b'{"schema": 1, "agent_id": "x", "deployment": {"task_id": "t1", "install_dir": "/a"}}'
    )
    loaded = load_state(path)
    assert loaded is not None and loaded.apps == {}
    assert [(app, d.task_id) for app, d in loaded.deployments()] == [("default", "t1")]


def test_begin_attempt_forgets_a_final_task_only_for_a_higher_attempt() -> None:
    state = AgentState(agent_id="dev-1")
    state.report("t1", TargetState.DECLINED, "no trust anchor")
    assert not state.begin_attempt("t1", 0)  # the first announcement again: a duplicate
    assert state.begin_attempt("t1", 1)  # a retry: forgotten, to be assessed anew
    assert "t1" not in state.history and state.unacked == []
    state.report("t1", TargetState.DECLINED, "again")
    assert not state.begin_attempt("t1", 1)  # the retry announced twice: a duplicate
    assert state.history["t1"] is TargetState.DECLINED
    state.remember("t2", TargetState.RUNNING)
    assert not state.begin_attempt("t2", 5)  # not final: nothing is forgotten
    assert state.history["t2"] is TargetState.RUNNING and state.attempts["t2"] == 5


def test_health_phase_and_kept_previous_release_survive_a_restart(tmp_path: Path) -> None:
    previous = Deployment(task_id="v1", install_dir="/d/v1/app", run_commands=["./serve"])
    dep = Deployment(
        task_id="v2",
        install_dir="/d/v2/app",
        run_commands=["./serve"],
        health=HealthPhase(started_ms=1_000, attempts_done=2, last_failure="GET x: HTTP 500"),
        previous=previous,
    )
    state = AgentState(agent_id="a", apps={"web": dep})
    save_state(tmp_path / "state.json", state)
    loaded = load_state(tmp_path / "state.json")
    assert loaded is not None and loaded.apps["web"] == dep
    plan = resume_plan(loaded)
    assert plan.app_starts == (("web", (0,)),)  # the release being checked restarts, not v1


def test_state_without_health_fields_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        '{"schema": 2, "agent_id": "a", "deployment": {"task_id": "t", "install_dir": "/x"}}'
    )
    loaded = load_state(path)
    assert loaded is not None and loaded.deployment is not None
    assert loaded.deployment.health is None and loaded.deployment.previous is None
