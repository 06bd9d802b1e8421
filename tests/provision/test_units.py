"""The systemd units in deploy/systemd: systemd itself finds no error in them
(``systemd-analyze verify``, offline), and every option they pass exists in the command."""

from __future__ import annotations

import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNITS = ("swarmdeploy-agent.service", "swarmdeploy-manager.service")


def _exec_start(unit: str) -> list[str]:
    text = (ROOT / "deploy/systemd" / unit).read_text()
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_finds_nothing(unit: str, tmp_path: pathlib.Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    program = _exec_start(unit)[0]
    text = (ROOT / "deploy/systemd" / unit).read_text().replace(program + " ", "/bin/true ")
    (tmp_path / unit).write_text(text)  # the program is not installed on the test machine
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0 and unit not in done.stderr, done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_every_option_of_exec_start_exists(unit: str) -> None:
    argv = _exec_start(unit)
    command = argv[1]
    helped = subprocess.run([sys.executable, "-m", "swarmdeploy", command, "--help"],
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    for word in argv[2:]:
        if word.startswith("--"):
            assert word in helped.stdout, f"{unit}: {word} is not an option of {command}"
