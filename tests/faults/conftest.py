"""Fault-suite fixtures: a real manager and agents (:class:`LocalFleet`), agent data dirs on
a small tmpfs for the disk-full cases (docs/reliability.md)."""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Callable, Iterator

import pytest

from swarmdeploy.localfleet import LocalFleet
from tests.e2e.conftest import FAST_AGENT, FAST_MANAGER

#: Accept small tasks on a 20 MB device (the defaults keep 256 MB free).
SMALL_DISK = ["--disk-margin-bytes", "1M", "--low-disk-bytes", "1M"]


@pytest.fixture
def fleet(tmp_path: pathlib.Path) -> Iterator[LocalFleet]:
    """A started manager; agents are started by the test."""
    with LocalFleet(tmp_path, manager_args=FAST_MANAGER, agent_args=FAST_AGENT) as f:
        f.start_manager()
        yield f


@pytest.fixture
def small_disk() -> Iterator[Callable[[pathlib.Path, str], pathlib.Path]]:
    """``mount(dir, size)``: a tmpfs of ``size`` mounted on ``dir`` (created), unmounted at
    teardown. Needs root (as in CI); skipped with the reason otherwise."""
    if os.geteuid() != 0:
        pytest.skip("disk-full faults need root to mount a small tmpfs (CI runs as root)")
    mounted: list[pathlib.Path] = []

    def mount(directory: pathlib.Path, size: str = "20m") -> pathlib.Path:
        directory.mkdir(parents=True, exist_ok=True)
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], check=False)
