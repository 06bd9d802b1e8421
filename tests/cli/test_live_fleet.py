"""Live CLI views against a real manager and a real agent process: ``tasks create --follow``
and ``tasks watch`` exit codes with a failing device, ``logs --follow`` and the interactive
``terminal`` (stdin fed through a subprocess, Ctrl-C as SIGINT, Ctrl-D as end of input)."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import pytest

from swarmdeploy.cli.app import main
from swarmdeploy.localfleet import LocalFleet, processes_below, running_below, wait_for

pytestmark = pytest.mark.e2e

FAST_AGENT = ["--log-batch-s", "0.3", "--resend-s", "2", "--stop-grace-s", "2"]
FAST_AGENT += ["--reconnect-ivl-s", "0.1", "--reconnect-ivl-max-s", "1"]
AGENT = "live-1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("live"), agent_args=FAST_AGENT) as f:
        f.start_manager()
        f.start_agent(AGENT, token=f.tokens("live", 1)[0], tags=["live"])
        f.wait_online([AGENT])
        yield f


def _cli(fleet: LocalFleet, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["--url", fleet.url, f"--api-key={fleet.admin_key}", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def _descriptor(tmp_path: pathlib.Path, command: str) -> str:
    path = tmp_path / "task.yml"
    path.write_text(
        f"description: cli follow\ndeploy:\n  install:\n    commands: [{json.dumps(command)}]\n"
        f"  target:\n    ids: [{AGENT}]\n"
    )
    return str(path)


def test_create_follow_success_exit_0_plain_lines(
    fleet: LocalFleet, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    desc = _descriptor(tmp_path, "true")
    rc, out = _cli(fleet, capsys, "tasks", "create", desc, "--follow", "--poll", "1",
                   "--timeout", "120")  # fmt: skip
    assert rc == 0, out
    assert "1 of 1 target(s) succeeded" in out
    assert "settled" in out and "\x1b" not in out  # not a terminal: plain lines


def test_follow_failing_device_exit_1_groups_reason_and_json_watch(
    fleet: LocalFleet, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    desc = _descriptor(tmp_path, "echo boom >&2; exit 3")
    rc, out = _cli(fleet, capsys, "tasks", "create", desc, "-f", "--poll", "1",
                   "--timeout", "120")  # fmt: skip
    assert rc == 1, out
    assert "1 x install_failed" in out and "0 of 1 target(s) succeeded, 1 failed" in out
    task_id = out.split("created task ")[1].split()[0]
    rc, out = _cli(fleet, capsys, "tasks", "watch", task_id, "-o", "json")
    assert rc == 1
    doc = json.loads(out[: out.rindex("}") + 1])
    assert doc["id"] == task_id and doc["targets"][0]["state"] == "install_failed"


def test_watch_unknown_task_one_line_error(
    fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _cli(fleet, capsys, "tasks", "watch", "no-such-task")
    assert rc == 1 and "404" in out and len(out.strip().splitlines()) == 1


class Lines:
    """Lines of a pipe, read by a thread, waited for with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._pipe = pipe
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the process ended: wait for the reader to see the end, close the pipe."""
        self._thread.join(timeout=10)
        self._pipe.close()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line)

    def wait(self, text: str, timeout_s: float = 30.0) -> str:
        """The first line (from now on or already seen) containing ``text``."""
        for line in self.seen:
            if text in line:
                return line
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {timeout_s} s; saw {self.seen}")


def _stop(proc: subprocess.Popen[str], *pipes: Lines) -> None:
    """Kill ``proc`` if it still runs; close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for lines in pipes:
        lines.close()
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()


def _spawn(fleet: LocalFleet, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "swarmdeploy", "--url", fleet.url, f"--api-key={fleet.admin_key}"]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen([*cmd, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


def test_terminal_round_trip_ctrl_c_stops_ctrl_d_exits(fleet: LocalFleet) -> None:
    proc = _spawn(fleet, "terminal", AGENT)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        err.wait("Ctrl-D to exit")
        proc.stdin.write("echo term-$((6*7))\n")
        proc.stdin.flush()
        out.wait("term-42")
        err.wait("exit status 0")
        proc.stdin.write("echo started; exec sleep 300\n")
        proc.stdin.flush()
        out.wait("started")
        terminal_dir = fleet.agent_dir(AGENT) / "terminal"
        assert processes_below(terminal_dir)
        proc.send_signal(signal.SIGINT)
        err.wait("killed by terminal stop")
        wait_for(lambda: not processes_below(terminal_dir), timeout_s=15,
                 what="the terminal command to be killed")  # fmt: skip
        proc.stdin.close()  # Ctrl-D
        assert proc.wait(timeout=15) == 0
        assert "$manager" not in "".join(out.seen)  # only the command's own output
    finally:
        _stop(proc, out, err)


def test_logs_follow_tails_live_lines_until_ctrl_c(fleet: LocalFleet) -> None:
    proc = _spawn(fleet, "logs", "--follow", "--target", AGENT)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        err.wait("following logs")
        fleet.api.request("PUT", f"/targets/{AGENT}/command", json={"command": "echo tail-me"})
        line = out.wait("tail-me")
        assert AGENT in line and "terminal" in line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        _stop(proc, out, err)


def test_targets_show_lists_the_device_apps_and_json_stays_the_target(
    fleet: LocalFleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line

    def release(version: str, deploy: dict[str, object]) -> str:
        body = {
            "app": "shown",
            "version": version,
            "deploy": {**deploy, "target": {"ids": [AGENT]}},
        }
        return str(fleet.api.request("POST", "/tasks", json=body)["id"])

    first = release("1.0", {"run": {"commands": ["exec sleep 307"]}})
    fleet.wait_states(first, {AGENT: "running"})
    second = release("2.0", {"install": {"commands": ["exit 3"]}})  # leaves the device behind
    fleet.wait_states(second, {AGENT: "install_failed"})
    try:
        rc, out = _cli(fleet, capsys, "targets", "show", AGENT)
        assert rc == 0, out
        apps = out[out.index("apps:") :]
        row = next(line for line in apps.splitlines() if "shown" in line)
        assert f"{second} (2.0)" in row and f"{first} (1.0)" in row  # desired, running
        assert "yes" in row and "install_failed: install command 'exit 3' exited 3" in row
        rc, out = _cli(fleet, capsys, "targets", "show", AGENT, "-o", "json")
        doc = json.loads(out)
        assert rc == 0 and doc["id"] == AGENT and "items" not in doc and "apps" not in doc
    finally:
        fleet.api.request("PUT", f"/targets/{AGENT}/apps/shown/stop")
    fleet.wait_states(first, {AGENT: "stopped"})
    wait_for(
        lambda: not running_below(fleet.agent_dir(AGENT), "sleep 307"),
        timeout_s=10,
        what="app gone",
    )
