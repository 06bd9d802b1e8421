"""Shell completion (typer's ``--show-completion`` and the completion protocol) through the
real ``swarmdeploy`` console entry, in a subprocess as a shell runs it. Nothing is installed:
``--install-completion`` would edit the user's shell start-up file."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "swarmdeploy", *args]
    environ = {**os.environ, **env}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=environ)


def test_show_completion_prints_a_bash_script() -> None:
    shown = _run(["--show-completion", "bash"])
    assert shown.returncode == 0, shown.stderr
    assert "_SWARMDEPLOY_COMPLETE=complete_bash" in shown.stdout
    assert "complete -o default -F _swarmdeploy_completion swarmdeploy" in shown.stdout


def test_completion_protocol_completes_commands_and_options() -> None:
    env = {"_SWARMDEPLOY_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    done = _run([], COMP_WORDS="swarmdeploy tasks w", **env)
    assert done.returncode == 0 and done.stdout.split() == ["watch"], done.stderr
    done = _run([], COMP_WORDS="swarmdeploy targets update --cle", COMP_CWORD="3",
                _SWARMDEPLOY_COMPLETE="complete_bash")  # fmt: skip
    assert sorted(done.stdout.split()) == ["--clear-location", "--clear-tags"], done.stdout
