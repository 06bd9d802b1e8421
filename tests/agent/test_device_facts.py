"""What the agent reports about its device in ``health``: OS, architecture, agent version."""

from __future__ import annotations

import platform
from pathlib import Path

from swarmdeploy import __version__
from swarmdeploy.agent.healthloop import device_facts, os_name
from swarmdeploy.agent.resources import machine_arch


def test_os_name_is_the_pretty_name_of_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert os_name(release) == "Debian GNU/Linux 12 (bookworm)"


def test_os_name_without_os_release_is_kernel_name_and_release(tmp_path: Path) -> None:
    expected = f"{platform.system()} {platform.release()}"
    assert os_name(tmp_path / "missing") == expected
    (tmp_path / "empty").write_text("NAME=x\nPRETTY_NAME=\n")
    assert os_name(tmp_path / "empty") == expected


def test_device_facts_name_arch_and_version() -> None:
    os_text, arch, version = device_facts()
    assert os_text and arch == machine_arch() and version == __version__
