"""The runner (parallel supervised run commands) and sequential command stages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdeploy.agent.errors import LifecycleError
from swarmdeploy.agent.process import RUN_ID_VAR, child_env
from swarmdeploy.agent.runner import (
    CommandResult,
    Runner,
    RunnerState,
    SequenceConfig,
    new_run_id,
    run_command,
    run_sequence,
)
from swarmdeploy.agent.supervise import ProcessState, SupervisionConfig
from tests.agent.helpers import Recorder, eventually, kill_marked_now, live_with_marker

S = ProcessState
CONFIG = SupervisionConfig(grace_s=0.3, backoff_base_s=0.05, stable_after_s=5.0)
SEQ = SequenceConfig(timeout_s=5.0, grace_s=0.3)

#: Commands that the original agent could not stop (cpswarm-original.md §10.2 item 4).
STUBBORN = [
    "sleep 300 & sleep 300",  # background child in the group
    "trap '' TERM; sleep 300",  # ignores SIGTERM: needs the SIGKILL
    "(sleep 300 &); sleep 300",  # double fork, orphan stays in the group
    "setsid sleep 300 & sleep 300",  # leaves the group; found by its marker
]


@pytest.fixture
def run_id() -> Iterator[str]:
    value = new_run_id()
    yield value
    kill_marked_now(value)


def _runner(commands: list[str], cwd: Path, run_id: str, rec: Recorder) -> Runner:
    return Runner(
        commands,
        cwd=cwd,
        env=child_env(),
        config=CONFIG,
        on_line=rec.line,
        on_event=rec.event,
        run_id=run_id,
    )


async def test_runner_runs_commands_in_parallel_and_reports_exit_codes(
    tmp_path: Path, run_id: str
) -> None:
    rec = Recorder()
    runner = _runner(["sleep 0.5; echo a", "sleep 0.5; echo b; exit 4"], tmp_path, run_id, rec)
    started = time.monotonic()
    runner.start()
    result = await asyncio.wait_for(runner.wait(), 5)
    assert time.monotonic() - started < 0.95  # parallel: in sequence it takes 1 s
    assert [(o.state, o.exit_code) for o in result.outcomes] == [(S.EXITED, 0), (S.EXITED, 4)]
    assert not result.ok and not result.stopped
    assert sorted(rec.texts()) == ["a", "b"]
    assert runner.state is RunnerState.ENDED


async def test_runner_all_zero_is_ok(tmp_path: Path, run_id: str) -> None:
    runner = _runner(["true", "echo x"], tmp_path, run_id, Recorder())
    runner.start()
    assert (await runner.wait()).ok


async def test_runner_stop_leaves_no_process_behind(tmp_path: Path, run_id: str) -> None:
    rec = Recorder()
    runner = _runner(STUBBORN, tmp_path, run_id, rec)
    runner.start()
    # 3 + 2 + 3 + 3 processes carry the marker once everything is up.
    await eventually(lambda: len(live_with_marker(run_id)) == 11)
    assert len(runner.process_groups) == 4
    result = await asyncio.wait_for(runner.stop(), 10)
    assert result.stopped and all(o.state is S.STOPPED for o in result.outcomes)
    assert live_with_marker(run_id) == []
    assert runner.process_groups == []
    for index in range(4):
        assert rec.states(index)[-2:] == [S.STOPPING, S.STOPPED]


async def test_runner_commands_see_their_marker(tmp_path: Path, run_id: str) -> None:
    rec = Recorder()
    runner = _runner([f'echo "${RUN_ID_VAR}"'], tmp_path, run_id, rec)
    runner.start()
    await runner.wait()
    assert rec.texts() == [run_id]


async def test_runner_cannot_start_twice(tmp_path: Path, run_id: str) -> None:
    runner = _runner(["true"], tmp_path, run_id, Recorder())
    with pytest.raises(LifecycleError):
        await runner.wait()
    runner.start()
    with pytest.raises(LifecycleError):
        runner.start()
    await runner.wait()


async def test_runner_autorestart_restarts_only_the_crashed_command(
    tmp_path: Path, run_id: str
) -> None:
    rec = Recorder()
    runner = Runner(
        ["sleep 300", "exit 1"],
        cwd=tmp_path,
        env=child_env(),
        config=SupervisionConfig(
            auto_restart=True, grace_s=0.3, backoff_base_s=0.01, max_quick_failures=3
        ),
        on_line=rec.line,
        on_event=rec.event,
        run_id=run_id,
    )
    runner.start()
    await eventually(lambda: runner.states()[1] is S.FATAL)
    assert runner.states()[0] is S.RUNNING
    assert rec.states(0) == [S.STARTING, S.RUNNING]
    result = await runner.stop()
    assert [o.state for o in result.outcomes] == [S.STOPPED, S.FATAL]
    assert live_with_marker(run_id) == []


async def test_run_sequence_stops_at_first_failure(tmp_path: Path) -> None:
    rec = Recorder()
    seen: list[CommandResult] = []
    result = await run_sequence(
        ["echo one > f", "cat f; exit 2", "echo never"],
        cwd=tmp_path,
        env=child_env(),
        on_line=rec.line,
        config=SEQ,
        on_result=seen.append,
    )
    assert not result.ok
    assert [r.exit_code for r in result.results] == [0, 2]
    assert result.failed is not None and result.failed.command == "cat f; exit 2"
    assert rec.texts() == ["one"] and [r.command for r in seen] == ["echo one > f", "cat f; exit 2"]


async def test_run_sequence_all_succeed(tmp_path: Path) -> None:
    result = await run_sequence(
        ["true", "true"], cwd=tmp_path, env=child_env(), on_line=lambda line: None, config=SEQ
    )
    assert result.ok and result.failed is None and len(result.results) == 2


async def test_run_command_timeout_kills_whole_group(tmp_path: Path) -> None:
    rec = Recorder()
    config = SequenceConfig(timeout_s=0.3, grace_s=0.2)
    result = await run_command(
        f'echo "${RUN_ID_VAR}"; trap "" TERM; sleep 300 & sleep 300',
        cwd=tmp_path,
        env=child_env(),
        on_line=rec.line,
        config=config,
    )
    assert result.timed_out and not result.ok
    assert result.exit_code == -9
    assert live_with_marker(rec.texts()[0]) == []


async def test_run_command_leftovers_are_killed_at_exit(tmp_path: Path) -> None:
    rec = Recorder()
    result = await run_command(
        f'echo "${RUN_ID_VAR}"; setsid sleep 300 & sleep 300 & exit 0',
        cwd=tmp_path,
        env=child_env(),
        on_line=rec.line,
        config=SEQ,
    )
    assert result.ok
    assert live_with_marker(rec.texts()[0]) == []


async def test_run_command_cancelled_kills_group(tmp_path: Path) -> None:
    rec = Recorder()
    task = asyncio.create_task(
        run_command(
            f'echo "${RUN_ID_VAR}"; sleep 300',
            cwd=tmp_path,
            env=child_env(),
            on_line=rec.line,
            config=SEQ,
        )
    )
    await eventually(lambda: len(rec.lines) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live_with_marker(rec.texts()[0]) == []


async def test_run_command_missing_cwd_reports_error(tmp_path: Path) -> None:
    result = await run_command(
        "true", cwd=tmp_path / "nope", env=child_env(), on_line=lambda line: None, config=SEQ
    )
    assert result.exit_code is None and not result.ok
    assert result.error is not None and "cannot start" in result.error
