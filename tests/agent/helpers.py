"""Helpers for the agent tests: independent process-table checks (psutil), recorders, and
the server stack the agent must never import."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from swarmdeploy.agent.output import OutputLine
from swarmdeploy.agent.process import RUN_ID_VAR
from swarmdeploy.agent.supervise import ProcessEvent, ProcessState

# What only the manager and the CLI use: an agent process that imports any of it grew by the
# server stack (idle RSS budget). Tests add the modules their own import path avoids.
SERVER_STACK = (
    "prometheus_client",
    "pydantic",
    "httpx",
    "fastapi",
    "sqlalchemy",
    "cryptography",
    "yaml",
    "swarmdeploy.manager",
    "swarmdeploy.storage",
    "swarmdeploy.cli",
)


def connect_probe(python: str, port: int, prefix: str = "") -> str:
    """A shell command in which ``python`` connects to 127.0.0.1:``port`` (3 s timeout) and
    prints ``{prefix}CONNECTED``, or ``{prefix}FAILED`` and the error; it exits 0 either way."""
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
        f"    print('{prefix}CONNECTED')\n"
        "except OSError as exc:\n"
        f"    print('{prefix}FAILED', exc)\n"
    )
    return f'{python} -c "{code}"'


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_with_marker(run_id: str) -> list[int]:
    """Live processes whose environment carries ``SWARMDEPLOY_RUN_ID=run_id`` (via psutil)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(RUN_ID_VAR) == run_id and _alive(proc):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def live_commands(run_id: str) -> list[int]:
    """:func:`live_with_marker` without the sandbox's own processes (bubblewrap and its
    init in the PID namespace carry the marker too): the deployed commands themselves."""
    found = []
    for pid in live_with_marker(run_id):
        try:
            if psutil.Process(pid).name() != "bwrap":
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def live_in_group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (via psutil)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and _alive(proc):
                found.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def kill_marked_now(run_id: str) -> None:
    """Test clean-up: SIGKILL whatever still carries the marker."""
    for pid in live_with_marker(run_id):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``predicate()`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@dataclass
class Recorder:
    """Collects output lines and process events."""

    lines: list[OutputLine] = field(default_factory=list)
    events: list[ProcessEvent] = field(default_factory=list)

    def line(self, line: OutputLine) -> None:
        self.lines.append(line)

    def event(self, event: ProcessEvent) -> None:
        self.events.append(event)

    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    def states(self, index: int = 0) -> list[ProcessState]:
        return [e.new for e in self.events if e.index == index]
