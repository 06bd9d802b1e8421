"""Suite-wide fixtures.

* ``no_leaked_processes`` (autouse): a test that leaves a child process of the test runner
  alive fails (house style: subprocess hygiene is tested, not hoped for).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest

pytest_plugins = ["tests.fixtures_pg"]

_SETTLE_S = 5.0


def _children() -> set[psutil.Process]:
    """Live children of the test runner. A child that ends while it is looked at is left
    out on its own (a browser starts and ends helper processes all the time); answering
    "none" for all of them would make every process of a module fixture look leaked."""
    alive = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.add(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.fixture(autouse=True)
def umask_restored() -> Iterator[None]:
    """Process-wide settings a test changes (the agent's hardening sets umask 077) are put
    back, so later tests see the runner's own umask."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves child processes behind (session-scoped servers are exempt)."""
    before = {p.pid for p in _children()}
    yield
    deadline = time.monotonic() + _SETTLE_S
    leaked: set[psutil.Process] = set()
    while time.monotonic() < deadline:
        leaked = {p for p in _children() if p.pid not in before}
        if not leaked:
            return
        time.sleep(0.05)
    names = []
    for proc in leaked:
        try:
            names.append(f"{proc.pid}:{' '.join(proc.cmdline())[:80]}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    pytest.fail(f"{request.node.nodeid} leaked processes: {names}")
