"""sd_notify against unix datagram sockets the tests create, and the systemd unit file."""

from __future__ import annotations

import configparser
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdeploy.agent.sdnotify import Notifier, watchdog_interval_s

UNIT = Path(__file__).parents[2] / "deploy/systemd/swarmdeploy-agent.service"


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield str(tmp_path / "notify"), sock
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"swarmdeploy-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


def test_messages_reach_path_socket(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready("connected to\nmanager")
    assert sock.recv(4096) == b"READY=1\nSTATUS=connected to manager"
    assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.status("3 tasks") and sock.recv(4096) == b"STATUS=3 tasks"
    assert notifier.stopping() and sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_messages_reach_abstract_socket(abstract_socket: tuple[str, socket.socket]) -> None:
    address, sock = abstract_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    notifier.close()


def test_without_notify_socket_everything_is_noop() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog()


def test_relative_notify_socket_ignored() -> None:
    assert not Notifier.from_env({"NOTIFY_SOCKET": "relative/sock"}).enabled


def test_missing_listener_returns_false(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert notifier.enabled and not notifier.watchdog()
    notifier.close()


def test_watchdog_interval() -> None:
    me = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}) is None
    assert watchdog_interval_s({}) is None


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_file_declares_notify_watchdog_and_no_orphans() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30" and service["Restart"] == "on-failure"
    assert service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) > 5  # longer than the agent's own grace period
    assert "swarmdeploy agent" in service["ExecStart"]
    # the trust anchor comes from agent.env (or the agent declines all; tests/provision)
    assert "EnvironmentFile=-/etc/swarmdeploy/agent.env" in UNIT.read_text()
    assert service["UMask"] == "0077" and service["LimitCORE"] == "0"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_file_passes_systemd_analyze(tmp_path: Path) -> None:
    # Copy with ExecStart pointing at a binary that exists, so only the syntax is judged.
    text = UNIT.read_text().replace("/opt/swarmdeploy/bin/swarmdeploy", "/bin/true")
    unit = tmp_path / "swarmdeploy-agent.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    problems = [line for line in result.stderr.splitlines() if str(unit) in line]
    assert problems == [], result.stderr
