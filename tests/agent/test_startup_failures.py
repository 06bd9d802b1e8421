"""Every start-up failure of a real agent process is one line on stderr and exit status 2,
without a traceback (issue 13): a data dir it cannot use, a bad trust anchor file, a bad
manager URL."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

PREFIX = "swarmdeploy agent: "


def _agent(data_dir: pathlib.Path, *args: str) -> str:
    """Run an agent that must fail at start; its one line of error (status 2 checked)."""
    cmd = [sys.executable, "-m", "swarmdeploy", "agent", "--data-dir", str(data_dir)]
    cmd += ["--token", "0000-0000-0000", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith(PREFIX), done.stderr
    return lines[0][len(PREFIX) :]


LAB = ("--manager", "http://127.0.0.1:9", "--insecure-lab")


def test_data_dir_below_a_file(tmp_path: pathlib.Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    line = _agent(plain / "agent", *LAB)
    assert line == f"cannot create the data dir {plain / 'agent'}: Not a directory"


def test_state_file_that_cannot_be_read(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "agent"
    (data / "state.json").mkdir(parents=True)
    data.chmod(0o700)
    line = _agent(data, *LAB)
    assert line.startswith(f"cannot read agent state {data / 'state.json'}: ")


@pytest.mark.parametrize(
    ("content", "words"),
    [("garbage\n", "malformed"), (None, "No such file or directory")],
)
def test_bad_trust_anchor_file(tmp_path: pathlib.Path, content: str | None, words: str) -> None:
    anchor = tmp_path / "ca.pem"
    if content is not None:
        anchor.write_text(content)
    line = _agent(
        tmp_path / "agent", "--manager", "http://127.0.0.1:9", "--trust-anchor", str(anchor)
    )
    assert line.startswith(f"--trust-anchor {anchor}: ") and words in line


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://manager", "must be an http:// or https:// URL with a host"),
        ("manager.local:8080", "must be an http:// or https:// URL with a host"),
        ("http://127.0.0.1:99999", "Port out of range"),
    ],
)
def test_bad_manager_url(tmp_path: pathlib.Path, url: str, words: str) -> None:
    line = _agent(tmp_path / "agent", "--manager", url, "--insecure-lab")
    assert line.startswith(f"--manager {url!r}") and words in line
