"""Launching commands in their own group and killing everything they started."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdeploy.agent.errors import LaunchError
from swarmdeploy.agent.output import SPLIT_MARKER, Stream
from swarmdeploy.agent.process import (
    RUN_ID_VAR,
    Child,
    LaunchSpec,
    ShellLauncher,
    child_env,
    group_members,
    marked_processes,
    terminate_group,
    terminate_marked,
)
from swarmdeploy.agent.runner import new_run_id
from tests.agent.helpers import (
    Recorder,
    eventually,
    kill_marked_now,
    live_in_group,
    live_with_marker,
)

GRACE_S = 0.3


@pytest.fixture
def marker() -> Iterator[str]:
    run_id = new_run_id()
    yield run_id
    kill_marked_now(run_id)


def _spawn(cmd: str, cwd: Path, marker: str, rec: Recorder, cap: int = 16384) -> Child:
    spec = LaunchSpec(cmd, cwd, child_env({RUN_ID_VAR: marker}))
    return Child.spawn(spec, ShellLauncher(), rec.line, cap)


def test_child_env_keeps_only_safe_variables() -> None:
    env = child_env(
        {"EXTRA": "1"},
        inherit={"PATH": "/x", "NOTIFY_SOCKET": "@s", "SWARMDEPLOY_AGENT_TOKEN": "t", "HOME": "/h"},
    )
    assert env == {
        "PATH": "/x",
        "HOME": "/h",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "EXTRA": "1",
    }


def test_child_env_defaults_path() -> None:
    assert "/usr/bin" in child_env(inherit={})["PATH"].split(":")


async def test_spawn_missing_cwd_raises_launch_error(tmp_path: Path, marker: str) -> None:
    with pytest.raises(LaunchError, match="cannot start"):
        _spawn("true", tmp_path / "missing", marker, Recorder())


async def test_child_runs_in_own_group_with_cwd_and_env(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    child = _spawn('pwd; echo "$PYTHONUNBUFFERED"; echo err >&2', tmp_path, marker, rec)
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    assert await child.wait() == 0
    assert await child.drain(2.0)
    out = [ln.text for ln in rec.lines if ln.stream is Stream.STDOUT]
    assert out == [str(tmp_path), "1"]
    assert [(ln.text, ln.error) for ln in rec.lines if ln.stream is Stream.STDERR] == [
        ("err", True)
    ]


async def test_wait_returns_while_background_child_holds_pipe(tmp_path: Path, marker: str) -> None:
    child = _spawn("sleep 300 & echo started; exit 7", tmp_path, marker, Recorder())
    started = time.monotonic()
    assert await asyncio.wait_for(child.wait(), 5) == 7
    assert time.monotonic() - started < 5
    assert live_in_group(child.pgid)  # the background sleep is still there
    assert await terminate_group(child.pgid, GRACE_S)
    assert live_in_group(child.pgid) == []
    assert await child.drain(2.0)


async def test_terminate_group_kills_term_ignoring_child_after_grace(
    tmp_path: Path, marker: str
) -> None:
    rec = Recorder()
    child = _spawn("trap '' TERM; echo ready; sleep 300", tmp_path, marker, rec)
    await eventually(lambda: rec.texts() == ["ready"])
    started = time.monotonic()
    assert await terminate_group(child.pgid, GRACE_S)
    assert time.monotonic() - started >= GRACE_S
    assert await child.wait() == -9
    assert live_with_marker(marker) == []


async def test_terminate_group_kills_double_forked_grandchild(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    child = _spawn("(sleep 300 &); echo forked; sleep 300", tmp_path, marker, rec)
    await eventually(lambda: rec.texts() == ["forked"])
    await eventually(lambda: len(live_in_group(child.pgid)) == 3)  # sh, orphan sleep, sleep
    assert await terminate_group(child.pgid, GRACE_S)
    await child.wait()
    assert live_with_marker(marker) == []


async def test_terminate_group_terms_descendant_that_left_the_group(
    tmp_path: Path, marker: str
) -> None:
    rec = Recorder()
    inner = "trap 'echo left got TERM; exit 0' TERM; echo ready; sleep 300 & wait"
    child = _spawn(f'setsid sh -c "{inner}" & sleep 300', tmp_path, marker, rec)
    await eventually(lambda: rec.texts() == ["ready"] and len(live_with_marker(marker)) == 4)
    assert len(live_in_group(child.pgid)) == 2  # the setsid shell and its sleep left it
    assert await terminate_group(child.pgid, GRACE_S)
    await child.wait()
    await child.drain(2.0)  # the last line may still be in the pipe when the leader is gone
    assert rec.texts() == ["ready", "left got TERM"]  # SIGTERM reached it, not just SIGKILL
    assert live_with_marker(marker) == []


async def test_terminate_marked_finds_setsid_escapee(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    # Double fork: the escapee is neither in the group nor a descendant of the leader.
    child = _spawn("(setsid sleep 300 &); echo go; sleep 300", tmp_path, marker, rec)
    await eventually(lambda: len(live_with_marker(marker)) == 3)
    assert await terminate_group(child.pgid, GRACE_S)
    await child.wait()
    escaped = live_with_marker(marker)
    assert len(escaped) == 1 and os.getpgid(escaped[0]) != child.pgid
    assert marked_processes(marker) == escaped
    assert await terminate_marked(marker, GRACE_S)
    assert live_with_marker(marker) == []
    await child.drain(2.0)


async def test_terminate_group_of_finished_group_is_true(tmp_path: Path, marker: str) -> None:
    child = _spawn("true", tmp_path, marker, Recorder())
    await child.wait()
    assert group_members(child.pgid) == []
    assert await terminate_group(child.pgid, GRACE_S)


async def test_huge_line_is_split_and_pipe_never_blocks(tmp_path: Path, marker: str) -> None:
    rec = Recorder()
    code = "import sys; sys.stdout.write('x' * 300000 + '\\nend\\n')"
    child = _spawn(f'{sys.executable} -c "{code}"', tmp_path, marker, rec, cap=16384)
    assert await asyncio.wait_for(child.wait(), 10) == 0
    assert await child.drain(2.0)
    texts = rec.texts()
    assert texts[-1] == "end"
    pieces = texts[:-1]
    assert all(len(p.encode()) <= 16384 + len(SPLIT_MARKER) for p in pieces)
    assert "".join(p.removesuffix(SPLIT_MARKER) for p in pieces) == "x" * 300000
