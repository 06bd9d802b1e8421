"""Supervision of one command: states, backoff to FATAL, operator stop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdeploy.agent.errors import LifecycleError
from swarmdeploy.agent.process import RUN_ID_VAR, LaunchSpec, child_env
from swarmdeploy.agent.runner import new_run_id
from swarmdeploy.agent.supervise import (
    ProcessState,
    SupervisedProcess,
    SupervisionConfig,
)
from tests.agent.helpers import Recorder, eventually, kill_marked_now, live_with_marker

S = ProcessState
FAST = SupervisionConfig(
    grace_s=0.3, backoff_base_s=0.05, backoff_max_s=0.2, stable_after_s=5.0, max_quick_failures=3
)


@pytest.fixture
def marker() -> Iterator[str]:
    run_id = new_run_id()
    yield run_id
    kill_marked_now(run_id)


def _proc(
    cmd: str, cwd: Path, marker: str, rec: Recorder, config: SupervisionConfig = FAST
) -> SupervisedProcess:
    spec = LaunchSpec(cmd, cwd, child_env({RUN_ID_VAR: marker}))
    return SupervisedProcess(spec, config=config, on_line=rec.line, on_event=rec.event)


async def test_exit_zero_ends_exited_with_events_in_order(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    proc = _proc("echo hi", tmp_path, marker, rec)
    proc.start()
    assert await asyncio.wait_for(proc.wait(), 5) is S.EXITED
    assert rec.states() == [S.STARTING, S.RUNNING, S.EXITED]
    assert rec.events[-1].exit_code == 0 and rec.events[1].pid is not None
    assert rec.texts() == ["hi"]


async def test_crash_without_autorestart_is_exited_with_code(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    proc = _proc("exit 3", tmp_path, marker, rec)
    proc.start()
    assert await proc.wait() is S.EXITED
    assert proc.exit_code == 3 and proc.starts == 1


async def test_crash_with_autorestart_backs_off_then_fatal(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    config = dataclasses.replace(FAST, auto_restart=True)
    proc = _proc("echo run; exit 3", tmp_path, marker, rec, config)
    proc.start()
    assert await asyncio.wait_for(proc.wait(), 5) is S.FATAL
    assert rec.states() == [
        *(S.STARTING, S.RUNNING, S.BACKOFF),
        *(S.STARTING, S.RUNNING, S.BACKOFF),
        *(S.STARTING, S.RUNNING, S.FATAL),
    ]
    assert proc.starts == 3 and rec.texts() == ["run"] * 3
    backoffs = [e.message for e in rec.events if e.new is S.BACKOFF]
    assert backoffs == ["restart in 0.1s", "restart in 0.1s"]  # 0.05 then 0.10 (rounded)
    assert rec.events[-1].exit_code == 3


def test_backoff_doubles_up_to_max() -> None:
    config = SupervisionConfig(backoff_base_s=1.0, backoff_max_s=5.0)
    assert [config.backoff_s(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_stable_runs_reset_failure_count(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    config = SupervisionConfig(
        auto_restart=True,
        grace_s=0.3,
        backoff_base_s=0.01,
        stable_after_s=0.0,
        max_quick_failures=2,
    )
    proc = _proc("exit 1", tmp_path, marker, rec, config)
    proc.start()
    await eventually(lambda: proc.starts >= 4)  # would be FATAL after 2 without the reset
    await proc.stop()
    assert proc.state is S.STOPPED
    assert S.FATAL not in rec.states()


async def test_stop_kills_group_and_never_restarts(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    config = dataclasses.replace(FAST, auto_restart=True)
    proc = _proc("sleep 300 & sleep 300", tmp_path, marker, rec, config)
    proc.start()
    await eventually(lambda: len(live_with_marker(marker)) == 3)  # sh and two sleeps
    await asyncio.wait_for(proc.stop(), 5)
    assert proc.state is S.STOPPED
    assert rec.states() == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]
    assert live_with_marker(marker) == []
    await asyncio.sleep(0.2)  # no restart sneaks in after the stop
    assert proc.starts == 1 and proc.state is S.STOPPED


async def test_stop_during_backoff_goes_stopped(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    config = SupervisionConfig(auto_restart=True, backoff_base_s=30.0, backoff_max_s=30.0)
    proc = _proc("exit 1", tmp_path, marker, rec, config)
    proc.start()
    await eventually(lambda: proc.state is S.BACKOFF)
    await asyncio.wait_for(proc.stop(), 2)
    assert rec.states()[-2:] == [S.BACKOFF, S.STOPPED]


async def test_leader_exit_ends_rest_of_group(tmp_path: Path, marker: str) -> None:
    proc = _proc("sleep 300 & exit 0", tmp_path, marker, Recorder())
    proc.start()
    assert await asyncio.wait_for(proc.wait(), 5) is S.EXITED
    assert live_with_marker(marker) == []


async def test_missing_cwd_without_autorestart_is_fatal(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    proc = _proc("true", tmp_path / "gone", marker, rec)
    proc.start()
    assert await proc.wait() is S.FATAL
    assert rec.states() == [S.STARTING, S.FATAL] and proc.starts == 0


async def test_start_while_running_raises(tmp_path: Path, marker: str) -> None:
    proc = _proc("sleep 300", tmp_path, marker, Recorder())
    proc.start()
    with pytest.raises(LifecycleError):
        proc.start()
    await proc.stop()


async def test_restart_after_exit_is_allowed(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    proc = _proc("true", tmp_path, marker, rec)
    proc.start()
    await proc.wait()
    proc.start()
    assert await proc.wait() is S.EXITED and proc.starts == 2


async def test_stop_before_task_runs_never_launches(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    proc = _proc("sleep 300", tmp_path, marker, rec)
    proc.start()
    await proc.stop()  # the supervising task has not run yet
    assert proc.state is S.STOPPED
    assert live_with_marker(marker) == []


async def test_cancelled_supervision_kills_group(tmp_path: Path, marker: str) -> None:
    proc = _proc("sleep 300", tmp_path, marker, Recorder())
    proc.start()
    await eventually(lambda: len(live_with_marker(marker)) == 2)  # sh and sleep
    task = proc._task
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live_with_marker(marker) == []


async def test_failing_event_subscriber_does_not_break_supervision(
    tmp_path: Path, marker: str
) -> None:
    def explode(event: object) -> None:
        raise RuntimeError("subscriber bug")

    spec = LaunchSpec("true", tmp_path, child_env({RUN_ID_VAR: marker}))
    proc = SupervisedProcess(spec, config=FAST, on_line=lambda line: None, on_event=explode)
    proc.start()
    assert await proc.wait() is S.EXITED
