"""Stage confinement under the agent's umask 077: the sandbox user enters its 0700 task dirs,
install writes, the sealed install dir is read-only for the run stage (with and without
bubblewrap), and a modified install dir is detected."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdeploy.agent.confine import Confinement, TaskDirs, check_tree, recorded_digest
from swarmdeploy.agent.errors import TaskRefused
from swarmdeploy.agent.process import Child, Launcher, LaunchSpec
from swarmdeploy.agent.sandbox import NOBODY, SandboxConfig, SandboxPolicy, detect_bwrap
from tests.agent.helpers import Recorder


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the confinement tests switch to uid 65534 and need root (CI)")
        pytest.skip("the confinement tests switch to uid 65534 and need root")


@pytest.fixture
def dirs() -> Iterator[TaskDirs]:
    """A task dir made as the agent makes it: umask 077, so every directory is 0700."""
    _need_root()
    base = Path(tempfile.mkdtemp(prefix="sd-confine-", dir="/var/tmp"))
    base.chmod(0o755)  # like /var/lib: the data dir's parents are traversable
    os.umask(0o077)  # restored after the test by tests/conftest.py
    data = base / "data"
    task = TaskDirs(data / "tasks" / "t1")
    task.app.mkdir(parents=True)
    (task.app / "run.sh").write_text("echo from-app\n")
    (task.app / "bin").mkdir()
    try:
        yield task
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _configs(data: Path) -> list[SandboxConfig]:
    fallback = SandboxConfig.detect(hidden=[data], probe=False)
    found = [SandboxConfig(bwrap=None, setpriv=fallback.setpriv, prlimit=fallback.prlimit)]
    if detect_bwrap() is not None:
        found.append(SandboxConfig.detect(hidden=[data]))
    elif os.environ.get("CI"):
        pytest.fail("bubblewrap is required in CI")
    return found


async def _run(launcher: Launcher, cwd: Path, command: str, env: dict[str, str]) -> list[str]:
    rec = Recorder()
    child = Child.spawn(LaunchSpec(command, cwd, env), launcher, rec.line, 16384)
    await asyncio.wait_for(child.wait(), 20)
    await child.drain(5)
    return rec.texts()


async def test_install_then_run_under_umask_077(dirs: TaskDirs) -> None:
    for config in _configs(dirs.root.parent.parent):
        confine, policy = Confinement(config), SandboxPolicy()
        env = confine.env(dirs)
        launcher = confine.writable_stage(dirs, policy)
        out = await _run(
            launcher,
            dirs.app,
            "id -u; sh run.sh; echo built > bin/tool; echo kept > $HOME/data; echo ok",
            env,
        )
        assert out == [str(NOBODY), "from-app", "ok"], config
        digest = confine.seal(dirs, policy)
        assert recorded_digest(dirs) == digest
        assert (dirs.app / "bin" / "tool").stat().st_uid == 0  # sealed: root-owned
        run = confine.run_stage(dirs, policy)
        out = await _run(
            run,
            dirs.app,
            "cat bin/tool; cat $HOME/data; (echo x > bin/tool) 2>/dev/null || echo denied;"
            " echo more >> $HOME/data && echo wrote",
            env,
        )
        assert out == ["built", "kept", "denied", "wrote"], config
        check_tree(dirs, digest)  # the run stage changed nothing in the install dir
        shutil.rmtree(dirs.work)
        for path in dirs.app.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        (dirs.app / "run.sh").write_text("echo from-app\n")
        (dirs.app / "bin").mkdir()


def test_modified_install_dir_is_refused(dirs: TaskDirs) -> None:
    confine = Confinement(SandboxConfig(bwrap=None))
    digest = confine.seal(dirs, SandboxPolicy())
    check_tree(dirs, digest)
    (dirs.app / "run.sh").write_text("echo pwned\n")
    with pytest.raises(TaskRefused) as info:
        check_tree(dirs, digest)
    assert info.value.code == "tampered_install"
    with pytest.raises(TaskRefused, match="no digest"):
        check_tree(dirs, "")
    shutil.rmtree(dirs.app)
    with pytest.raises(TaskRefused, match="unreadable"):
        check_tree(dirs, digest)


def test_sandbox_kind_and_the_warning_when_degraded(caplog: pytest.LogCaptureFixture) -> None:
    bwrap = Confinement(SandboxConfig(bwrap="/usr/bin/bwrap"))
    user = Confinement(SandboxConfig(bwrap=None, privileged=True))
    none = Confinement(SandboxConfig(bwrap=None, privileged=False))
    assert (bwrap.kind, user.kind, none.kind) == ("bwrap", "unprivileged_user", "none")
    with caplog.at_level(logging.WARNING, logger="swarmdeploy.agent.confine"):
        bwrap.warn_if_degraded()
        assert caplog.records == []
        user.warn_if_degraded()
        none.warn_if_degraded()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "bubblewrap is not available"
    ] * 2
    assert "the agent's own user" in caplog.records[1].getMessage()
