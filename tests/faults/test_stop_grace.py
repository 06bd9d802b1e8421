"""A stop gives every process the grace period, whatever shell wraps the command (issue #10
item 4, docs/reliability.md).

``./svc.sh`` runs under the launcher's wrapper shell, which has no TERM trap of its own;
``exec ./svc.sh`` replaces it. In both forms the service's TERM handler must run to its end
before any SIGKILL -- with bubblewrap (where the wrapper's death used to end the PID
namespace, killing the service mid-handler), with the fallback, and with no sandbox at all.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from swarmdeploy.agent.process import Child, Launcher, ShellLauncher, terminate_group
from tests.agent.helpers import Recorder, eventually
from tests.agent.test_sandbox_stop import _make, _spec, marker, task_dir

__all__ = ["marker", "task_dir"]  # fixtures used by the tests below

GRACE_S = 8.0
SVC = """#!/bin/sh
trap 'echo TRAP START; sleep 0.5; echo TRAP DONE; exit 0' TERM
echo ready
while true; do sleep 0.1; done
"""


@pytest.fixture(params=["none", "fallback", "bwrap"])
def launcher(request: pytest.FixtureRequest, task_dir: Path) -> Launcher:
    (task_dir / "svc.sh").write_text(SVC)
    (task_dir / "svc.sh").chmod(0o755)
    if request.param == "none":
        return ShellLauncher()
    return _make(str(request.param), task_dir)


@pytest.mark.parametrize("command", ["./svc.sh", "exec ./svc.sh"])
async def test_stop_lets_the_service_finish_its_term_handler(
    command: str, launcher: Launcher, task_dir: Path, marker: str
) -> None:
    rec = Recorder()
    child = Child.spawn(_spec(command, task_dir, marker), launcher, rec.line, 16384)
    await eventually(lambda: "ready" in rec.texts(), 10)
    started = time.monotonic()
    assert await terminate_group(child.pgid, GRACE_S)
    took = time.monotonic() - started
    await asyncio.wait_for(child.wait(), 10)
    await child.drain(5)
    assert "TRAP DONE" in rec.texts(), rec.texts()
    assert took < GRACE_S  # ended by the handler, not by SIGKILL
