"""One manager or agent per data dir: a second one is refused with one line naming the first."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from swarmdeploy.datalock import DataDirInUse, lock_data_dir
from tests.cli.manager_proc import free_port, running_manager


def _ports() -> list[str]:
    return ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]


def test_a_second_manager_on_the_same_data_dir_is_refused_naming_the_first(
    tmp_path: pathlib.Path,
) -> None:
    data = tmp_path / "manager"
    with running_manager(data, *_ports()):
        holder = (data / ".lock").read_text()
        second = subprocess.run(
            [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", str(data),
             "--http-port", str(free_port()), *_ports()],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "SWARMDEPLOY_ADMIN_KEY": "a-long-enough-admin-key-123"},
        )  # fmt: skip
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by swarmdeploy manager (pid" in lines[0]
    assert holder.startswith("swarmdeploy manager (pid ")


def test_an_agent_on_a_data_dir_in_use_is_refused(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "agent"
    data.mkdir(mode=0o700)
    fd = lock_data_dir(data, "swarmdeploy agent")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "swarmdeploy", "agent", "--data-dir", str(data),
             "--manager", "http://127.0.0.1:9", "--token", "0000-0000-0000", "--insecure-lab"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(fd)
    assert second.returncode == 2
    assert f"is in use by swarmdeploy agent (pid {os.getpid()})" in second.stderr


def test_the_lock_is_free_again_when_its_holder_closes_it(tmp_path: pathlib.Path) -> None:
    fd = lock_data_dir(tmp_path, "first")
    with pytest.raises(DataDirInUse, match=r"in use by first \(pid"):
        lock_data_dir(tmp_path, "second")
    os.close(fd)
    os.close(lock_data_dir(tmp_path, "second"))
