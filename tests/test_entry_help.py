"""``swarmdeploy --help`` where the operator CLI is not installed (a device with the agent
extra only): what this install can run, and which extra the CLI needs, instead of a
traceback."""

from __future__ import annotations

import subprocess
import sys

#: Runs the console script with the CLI's typer made unimportable, as on an agent-only device.
WITHOUT_TYPER = (
    "import sys; sys.modules['typer'] = None; "
    "from swarmdeploy.entry import main; sys.exit(main(sys.argv[1:]))"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TYPER, *args], capture_output=True, text=True, timeout=60
    )


def test_help_without_the_cli_names_the_commands_here_and_the_cli_extra() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    assert "usage: swarmdeploy {manager,agent} [OPTIONS]" in done.stdout
    assert "pip install 'swarmdeploy[cli]'" in done.stdout and "Traceback" not in done.stderr


def test_a_cli_command_without_the_cli_is_one_line_and_status_2() -> None:
    done = _run("targets", "list")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "the swarmdeploy operator CLI needs the 'cli' extra (module typer is missing): "
        "pip install 'swarmdeploy[cli]'"
    ]


def test_the_agents_own_help_still_works_without_the_cli() -> None:
    done = _run("agent", "--help")
    assert done.returncode == 0 and "--trust-anchor" in done.stdout
