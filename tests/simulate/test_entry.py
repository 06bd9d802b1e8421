"""``swarmdeploy simulate`` through the console script's dispatch: its help, and one line
naming the extras when they are not installed."""

from __future__ import annotations

import subprocess
import sys

#: Runs the console script with httpx made unimportable (an install without the cli extra).
WITHOUT_HTTPX = (
    "import sys; sys.modules['httpx'] = None; "
    "from swarmdeploy.entry import main; sys.exit(main(sys.argv[1:]))"
)


def test_simulate_help_lists_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "swarmdeploy", "simulate", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for option in ("--agents", "--token-set", "--install-time", "--failure-rate", "--duration"):
        assert option in done.stdout


def test_simulate_without_httpx_names_the_extras_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_HTTPX, "simulate", "--agents", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "swarmdeploy simulate needs the 'agent,cli' extras (module httpx is missing): "
        "pip install 'swarmdeploy[agent,cli]'"
    ]
