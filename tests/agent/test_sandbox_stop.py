"""Stopping sandboxed commands: SIGTERM reaches the command inside bubblewrap first (its TERM
trap runs and can still write), SIGKILL follows after the grace period, nothing is left.

The same for every launcher: bubblewrap (as a root agent, with ``--new-session``, and with a
user namespace as an agent that is not root uses) and the fallback without bubblewrap. Needs
``bwrap`` and root (commands switch to uid 65534); skipped without, failing in CI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from swarmdeploy.agent.process import (
    RUN_ID_VAR,
    Child,
    Launcher,
    LaunchSpec,
    child_env,
    terminate_group,
    terminate_marked,
)
from swarmdeploy.agent.runner import Runner, SequenceConfig, new_run_id, run_command
from swarmdeploy.agent.sandbox import (
    BwrapLauncher,
    FallbackLauncher,
    SandboxConfig,
    SandboxPolicy,
    detect_bwrap,
)
from swarmdeploy.agent.supervise import ProcessState, SupervisedProcess, SupervisionConfig
from swarmdeploy.agent.taskdirs import hand_over
from tests.agent.helpers import Recorder, eventually, kill_marked_now, live_with_marker

S = ProcessState
#: Long enough for any trap under load (a stop that needed the SIGKILL takes at least this
#: long, one that did not returns within a second or so): a graceful stop never reaches it.
GRACE_S = 30.0
#: For commands that ignore SIGTERM: the test waits this long for the SIGKILL.
SHORT_GRACE_S = 1.0
_BODY = "sleep 300 & sleep 301 & echo ready; wait"
#: Its TERM trap takes a while (a new process, not signalled again) and writes to its dir.
GRACEFUL = f"trap 'echo got TERM; sleep 0.2; touch \"$HOME/bye\"; echo bye; exit 0' TERM; {_BODY}"
STUBBORN = f"trap '' TERM; {_BODY}"
LAUNCHERS = ["bwrap", "bwrap_new_session", "bwrap_userns", "fallback"]


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture
def task_dir() -> Iterator[Path]:
    """A task dir the sandbox user owns, reachable by path (the fallback has no mounts)."""
    # Not below /tmp: bubblewrap mounts its own /tmp over it.
    base = Path(tempfile.mkdtemp(prefix="sd-stop-", dir="/var/tmp"))
    base.chmod(0o755)
    task = base / "task"
    task.mkdir()
    try:
        yield task
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def marker() -> Iterator[str]:
    run_id = new_run_id()
    yield run_id
    kill_marked_now(run_id)


def _make(kind: str, task: Path) -> Launcher:
    _need(os.geteuid() == 0, "the sandbox tests switch to uid 65534 and need root")
    found, policy = SandboxConfig.detect(probe=False), SandboxPolicy()
    if kind == "fallback":
        hand_over([task], policy, found)
        return FallbackLauncher(replace(found, bwrap=None), policy, quiet=True)
    _need(detect_bwrap() is not None, "bubblewrap (bwrap) is not installed or cannot run here")
    config = {
        "bwrap": found,
        "bwrap_new_session": replace(found, new_session=True),
        # As an agent that is not root: a user namespace, the task dir stays the agent's.
        "bwrap_userns": replace(found, privileged=False),
    }[kind]
    hand_over([task], policy, config)
    return BwrapLauncher(config, policy, writable=[task])


@pytest.fixture(params=LAUNCHERS)
def launcher(request: pytest.FixtureRequest, task_dir: Path) -> Launcher:
    return _make(str(request.param), task_dir)


@pytest.fixture(params=["bwrap", "fallback"])
def daemon_launcher(request: pytest.FixtureRequest, task_dir: Path) -> Launcher:
    """The two launchers the daemon uses as root: bubblewrap or the fallback."""
    return _make(str(request.param), task_dir)


def _spec(command: str, task: Path, marker: str) -> LaunchSpec:
    return LaunchSpec(command, task, child_env({RUN_ID_VAR: marker, "HOME": str(task)}))


def _everything(child: Child) -> list[psutil.Process]:
    """The run's processes, found independently (psutil): the leader and its descendants."""
    leader = psutil.Process(child.pid)
    return [leader, *leader.children(recursive=True)]


def _alive(procs: list[psutil.Process]) -> list[int]:
    out = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return out


async def _start(
    command: str, launcher: Launcher, task: Path, marker: str
) -> tuple[Child, Recorder]:
    rec = Recorder()
    child = Child.spawn(_spec(command, task, marker), launcher, rec.line, 16384)
    await eventually(lambda: "ready" in rec.texts(), 10)
    await eventually(lambda: len(_alive(_everything(child))) >= 3, 5)  # sh, two sleeps
    return child, rec


async def _stop(child: Child, grace_s: float, marker: str) -> tuple[int, float]:
    """Stop ``child`` by its group; return its exit code and how long the stop took, after
    checking that no process of the run is left."""
    procs = _everything(child)
    started = time.monotonic()
    assert await terminate_group(child.pgid, grace_s)
    took = time.monotonic() - started
    code = await asyncio.wait_for(child.wait(), 10)
    await eventually(lambda: not _alive(procs), 5)
    assert live_with_marker(marker) == []
    await child.drain(5)
    return code, took


async def test_stop_kills_every_sandboxed_process_after_term(
    launcher: Launcher, task_dir: Path, marker: str
) -> None:
    child, rec = await _start(GRACEFUL, launcher, task_dir, marker)
    code, took = await _stop(child, GRACE_S, marker)
    assert rec.texts()[-2:] == ["got TERM", "bye"]  # the trap ran to its end: a graceful stop
    assert (task_dir / "bye").exists()  # and could still write in its dir
    assert code == 0  # ended by the trap's exit 0, not by a signal
    assert took < GRACE_S  # no SIGKILL was needed


async def test_stop_with_new_session_still_kills_everything(task_dir: Path, marker: str) -> None:
    # Commands that left the launcher's group (--new-session) get SIGTERM too.
    child, rec = await _start(GRACEFUL, _make("bwrap_new_session", task_dir), task_dir, marker)
    assert os.getpgid(_everything(child)[-1].pid) != child.pgid
    code, _ = await _stop(child, GRACE_S, marker)
    assert "got TERM" in rec.texts()
    assert code == 0


async def test_stop_kills_term_ignoring_command_after_grace(
    launcher: Launcher, task_dir: Path, marker: str
) -> None:
    child, _ = await _start(STUBBORN, launcher, task_dir, marker)
    code, took = await _stop(child, SHORT_GRACE_S, marker)
    assert took >= SHORT_GRACE_S  # it ignored SIGTERM for the whole grace period
    assert code == -9  # then SIGKILL (bubblewrap's outer process or the shell itself)


async def test_supervised_sandboxed_stop_is_graceful_and_recorded_as_stopped(
    daemon_launcher: Launcher, task_dir: Path, marker: str
) -> None:
    rec = Recorder()
    proc = SupervisedProcess(
        _spec(GRACEFUL, task_dir, marker),
        config=SupervisionConfig(grace_s=GRACE_S),
        on_line=rec.line,
        on_event=rec.event,
        launcher=daemon_launcher,
    )
    proc.start()
    await eventually(lambda: "ready" in rec.texts(), 10)
    started = time.monotonic()
    await asyncio.wait_for(proc.stop(), GRACE_S + 10)
    assert time.monotonic() - started < GRACE_S
    assert rec.states() == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]
    assert rec.texts()[-2:] == ["got TERM", "bye"] and (task_dir / "bye").exists()
    assert rec.events[-1].exit_code == 0
    assert live_with_marker(marker) == []


async def test_runner_stop_terms_sandboxed_commands_then_kills_the_stubborn(
    daemon_launcher: Launcher, task_dir: Path, marker: str
) -> None:
    rec = Recorder()
    runner = Runner(
        [GRACEFUL, STUBBORN],
        cwd=task_dir,
        env=child_env({"HOME": str(task_dir)}),
        config=SupervisionConfig(grace_s=SHORT_GRACE_S),
        on_line=rec.line,
        on_event=rec.event,
        run_id=marker,
        launcher=daemon_launcher,
    )
    runner.start()
    await eventually(lambda: rec.texts().count("ready") == 2, 10)
    result = await asyncio.wait_for(runner.stop(), 15)
    assert [(o.state, o.exit_code) for o in result.outcomes] == [(S.STOPPED, 0), (S.STOPPED, -9)]
    assert "got TERM" in rec.texts() and (task_dir / "bye").exists()
    assert live_with_marker(marker) == []


async def test_install_command_timeout_runs_term_trap(
    daemon_launcher: Launcher, task_dir: Path, marker: str
) -> None:
    # Install and build commands share run_command: a timeout stops them the same way.
    rec = Recorder()
    result = await run_command(
        GRACEFUL,
        cwd=task_dir,
        env=child_env({"HOME": str(task_dir)}),
        on_line=rec.line,
        config=SequenceConfig(timeout_s=2.0, grace_s=GRACE_S),
        launcher=daemon_launcher,
        run_id=marker,
    )
    assert result.timed_out and not result.ok
    assert result.duration_s < 2.0 + GRACE_S  # ended by the trap, not by the SIGKILL
    assert rec.texts()[-2:] == ["got TERM", "bye"] and (task_dir / "bye").exists()
    assert live_with_marker(marker) == []


async def test_marked_sweep_terms_sandboxed_command_first(task_dir: Path, marker: str) -> None:
    # The sweep by marker (leftovers, e.g. after an agent restart) spares bwrap the same way.
    child, rec = await _start(GRACEFUL, _make("bwrap", task_dir), task_dir, marker)
    procs = _everything(child)
    assert await terminate_marked(marker, GRACE_S)
    assert await asyncio.wait_for(child.wait(), 10) == 0
    assert rec.texts()[-2:] == ["got TERM", "bye"] and (task_dir / "bye").exists()
    await eventually(lambda: not _alive(procs), 5)
    await child.drain(5)
