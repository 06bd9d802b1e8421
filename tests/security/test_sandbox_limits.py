"""Issue 9: resource limits and kernel surface of deployed commands, as the daemon applies
them with real bubblewrap. Without a ``sandbox.limits`` section a task runs under the
agent's ceilings (1,000 processes and a 1 GiB allocation fail); a task narrows them; one
asking above a ceiling is refused naming the field, and nothing of it runs; commands cannot
create user namespaces (seccomp); the agent reports what it enforces. The ceilings come
from the agent's own settings only (a manifest cannot widen them). Needs root, bubblewrap
and /usr/bin/python3 (CI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmdeploy.manager.services.task_signing import sandbox_of
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import Rig
from tests.agent.helpers import eventually
from tests.security.rig import deploy, secured_rig
from tests.security.test_sandbox_daemon import PYTHON, _need_sandbox

S = TargetState

FORK_BOMB = """\
import os, time
count = 0
try:
    for _ in range(1000):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        count += 1
    print("FORKED ALL", count)
except OSError as exc:
    print("FORK FAILED after", count, exc.strerror)
"""  # the children die with the PID namespace when this exits

ALLOCATE = """\
import sys
small = bytearray(64 << 20)
print("64 MiB ok")
try:
    big = bytearray(int(sys.argv[1]))
    print("ALLOCATED", len(big))
except MemoryError:
    print("ALLOCATION REFUSED")
"""

LIMITS = """\
import resource as r
names = ("NPROC", "DATA", "FSIZE", "CPU", "NOFILE")
print("LIMITS", *(r.getrlimit(getattr(r, "RLIMIT_" + n))[1] for n in names))
"""

NEW_USER_NAMESPACE = """\
import ctypes, os, subprocess
done = subprocess.run(["unshare", "--user", "--map-root-user", "id", "-u"],
                      capture_output=True, text=True)
print("UNSHARE", done.returncode, done.stdout.strip() or done.stderr.strip())
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
clone = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
pid = libc.syscall(clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
if pid == 0:
    os._exit(0)
if pid > 0:
    os.waitpid(pid, 0)
print("CLONE", "created" if pid > 0 else os.strerror(ctypes.get_errno()))
"""


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    _need_sandbox()
    async with await secured_rig(tmp_path) as rig:
        await rig.start()
        yield rig


def _sandbox(**section: Any) -> dict[str, Any]:
    """The signed policy of a descriptor's ``sandbox`` section, as the manager builds it."""
    return {"sandbox": sandbox_of({"sandbox": section})}


async def _line(rig: Rig, task_id: str, prefix: str) -> str:
    """The first output line starting with ``prefix`` (waits: output follows the state)."""
    await eventually(lambda: any(x.startswith(prefix) for x in rig.outputs(task_id)), 10)
    return next(x for x in rig.outputs(task_id) if x.startswith(prefix))


async def _run_script(
    rig: Rig, script: str, args: str = "", *, state: S = S.EXITED, **section: Any
) -> None:
    await deploy(
        rig,
        "t1",
        state,
        files={"probe.py": script},
        run=[f"{PYTHON} probe.py {args}"],
        sequence=1,
        sign_fields=_sandbox(**section),
    )


async def test_default_ceiling_stops_a_thousand_processes(rig: Rig) -> None:
    await _run_script(rig, FORK_BOMB)
    line = await _line(rig, "t1", "FORK")
    assert line.startswith("FORK FAILED after"), line
    assert int(line.split()[3]) < 256  # the default ceiling (the uid's other processes count)


async def test_default_ceiling_stops_a_1_gib_allocation(rig: Rig) -> None:
    await _run_script(rig, ALLOCATE, str(1 << 30))
    assert await _line(rig, "t1", "ALLOC") == "ALLOCATION REFUSED"
    assert "64 MiB ok" in rig.outputs("t1")


async def test_task_limits_narrow_the_ceilings(rig: Rig) -> None:
    limits = {"processes": 20, "memoryBytes": 1 << 28, "fileSizeBytes": 4096, "cpuSeconds": 30}
    await _run_script(rig, LIMITS, limits={**limits, "openFiles": 64})
    line = await _line(rig, "t1", "LIMITS")
    assert line.split()[1:] == ["20", str(1 << 28), "4096", "30", "64"]


async def test_limit_above_the_agents_ceiling_is_refused_naming_the_field(rig: Rig) -> None:
    await _run_script(
        rig, LIMITS, state=S.INSTALL_FAILED, limits={"memoryBytes": 2 << 30, "processes": 10}
    )
    reason = rig.reason("t1")
    assert reason.startswith("refused: sandbox_refused: this device does not grant")
    assert f"sandbox.limits.memoryBytes {2 << 30}" in reason and "--max-memory-bytes" in reason
    assert "processes" not in reason  # within the ceiling
    assert rig.outputs("t1") == [] or not any(x.startswith("LIMITS") for x in rig.outputs("t1"))
    assert not (rig.settings.data_dir / "tasks" / "t1").exists()


async def test_raised_ceiling_in_the_agents_own_config_allows_it(tmp_path: Path) -> None:
    _need_sandbox()
    async with await secured_rig(tmp_path, max_memory_bytes=3 << 30) as rig:
        await rig.start()
        await _run_script(rig, ALLOCATE, str(1 << 30), limits={"memoryBytes": 2 << 30})
        assert await _line(rig, "t1", "ALLOC") == f"ALLOCATED {1 << 30}"


async def test_commands_cannot_create_user_namespaces(rig: Rig) -> None:
    await _run_script(rig, NEW_USER_NAMESPACE)
    unshare = await _line(rig, "t1", "UNSHARE")
    assert not unshare.startswith("UNSHARE 0"), unshare  # would print "UNSHARE 0 0": root
    assert "Operation not permitted" in unshare
    assert await _line(rig, "t1", "CLONE") == "CLONE Operation not permitted"


async def test_agent_reports_what_it_enforces(rig: Rig) -> None:
    await _run_script(rig, LIMITS)  # a full round: hello and a health report were sent
    for extra in (rig.manager.hellos[-1][1].extra, rig.manager.health[-1][1].extra):
        confinement = extra["security"]["confinement"]
        assert confinement["seccomp"] is True and confinement["userns_blocked"] is True
        assert confinement["limits"] == {
            "mechanism": "rlimit",
            "cgroup": False,
            "processes": 256,
            "memoryBytes": 512 << 20,
            "fileSizeBytes": 1 << 30,
            "cpuSeconds": 0,
            "openFiles": 0,
        }
