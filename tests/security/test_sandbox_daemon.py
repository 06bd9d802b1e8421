"""The sandbox as the daemon applies it: a signed task's install and run commands run as
uid 65534 under the policy the manifest carries; they cannot write outside their dirs (the
install dir is read-only once installed) and cannot reach the network when the policy
says no network -- and can when it says yes (the probe works). Needs root and bubblewrap
(required in CI)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest

from swarmdeploy.agent.sandbox import NOBODY, detect_bwrap
from swarmdeploy.protocol.manifest import SandboxPolicy
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import Rig
from tests.agent.helpers import connect_probe, eventually
from tests.security.rig import deploy, secured_rig

S = TargetState
PYTHON = "/usr/bin/python3"  # the venv's python lives below /root (0700)


def _need_sandbox() -> None:
    if os.geteuid() != 0 or detect_bwrap() is None or not Path(PYTHON).exists():
        if os.environ.get("CI"):
            pytest.fail("the sandbox suite needs root, bubblewrap and python3 (CI)")
        pytest.skip("the sandbox suite needs root, bubblewrap and /usr/bin/python3")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    _need_sandbox()
    async with await secured_rig(tmp_path) as rig:
        await rig.start()
        yield rig


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def _probe_writes(targets: list[str]) -> str:
    return "; ".join(f"(echo x >> {t}) 2>/dev/null && echo WROTE {t}" for t in targets)


def _probe_network(port: int) -> str:
    return connect_probe(PYTHON, port, "NET ")


def _existing(paths: Iterable[str]) -> list[str]:
    return [p for p in paths if Path(p).exists()]


@pytest.fixture
def system_probes() -> Iterator[list[str]]:
    """Paths outside every sandbox dir; removed afterwards should a broken sandbox write."""
    paths = [f"/etc/sd-probe-{os.getpid()}", f"/usr/sd-probe-{os.getpid()}"]
    paths.append(f"/root/sd-probe-{os.getpid()}")
    yield paths
    for path in paths:
        Path(path).unlink(missing_ok=True)


async def test_commands_cannot_write_outside_their_dirs(
    rig: Rig, tmp_path: Path, system_probes: list[str]
) -> None:
    data = rig.settings.data_dir
    outside = [*system_probes, f"{data}/probe", f"{data}/state.json", f"{tmp_path}/probe"]
    install = [f"id -u; {_probe_writes(outside)}; echo > installed.txt; echo install-done"]
    run = [
        f"{_probe_writes([*outside, './app.txt', './installed.txt'])}; echo kept > $HOME/data;"
        " cat $HOME/data; echo run-done"
    ]
    await deploy(rig, "t1", S.EXITED, files={"app.txt": "v1"}, install=install, run=run, sequence=1)
    await eventually(lambda: "run-done" in rig.outputs("t1"), 10)
    out = rig.outputs("t1")
    assert str(NOBODY) in out and "install-done" in out and "kept" in out
    assert [line for line in out if line.startswith("WROTE")] == []
    assert _existing(p for p in outside if p != f"{data}/state.json") == []
    assert (data / "tasks" / "t1" / "app" / "app.txt").read_text() == "v1"


async def test_network_off_cannot_reach_a_loopback_listener(
    rig: Rig, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    await deploy(rig, "t1", S.EXITED, run=[_probe_network(port)], sequence=1)
    await eventually(lambda: any(x.startswith("NET") for x in rig.outputs("t1")), 10)
    assert next(x for x in rig.outputs("t1") if x.startswith("NET")).startswith("NET FAILED")


async def test_network_on_in_the_signed_policy_reaches_it(
    rig: Rig, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    policy = {"sandbox": SandboxPolicy(network=True)}
    await deploy(rig, "t1", S.EXITED, run=[_probe_network(port)], sequence=1, sign_fields=policy)
    await eventually(lambda: "NET CONNECTED" in rig.outputs("t1"), 10)
