"""``make deb``'s package (``deploy/deb/build.sh``): built from a staged tree, unpacked with
``dpkg-deb -x`` into a temporary directory, and run from there: ``--help``, the files and
control data a device gets, no server stack inside, and a real registration with a manager
started from the main venv.

Building takes about 5-10 s with pip's cache warm (the project's wheel plus pyzmq, PyNaCl,
msgspec and PyYAML); skipped, with the reason shown, only when dpkg-deb or /usr/bin/python3
is missing or the dependencies cannot be fetched (offline).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

from swarmdeploy.agent.provision.layout import PACKAGED_EXEC, agent_unit
from swarmdeploy.localfleet import LocalFleet
from tests.provision.helpers import (
    OFFLINE_HINTS,
    anchor_file,
    clean_env,
    start_registering_agent,
)

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER_STACK = ("fastapi", "uvicorn", "sqlalchemy", "nicegui", "typer", "httpx",
                "cryptography", "psutil")  # fmt: skip


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    """(the .deb, the directory it was unpacked into)."""
    if shutil.which("dpkg-deb") is None or not pathlib.Path("/usr/bin/python3").exists():
        pytest.skip("needs dpkg-deb and /usr/bin/python3 (a Debian system)")
    base = tmp_path_factory.mktemp("deb")
    built = subprocess.run(
        [str(ROOT / "deploy/deb/build.sh"), str(base / "dist")],
        capture_output=True, text=True, timeout=300, check=False,
        env=clean_env(PIP_PYTHON=sys.executable),
    )  # fmt: skip
    if built.returncode != 0:
        if any(hint in built.stderr for hint in OFFLINE_HINTS):
            pytest.skip(f"offline: cannot fetch the agent's dependencies ({built.stderr[-300:]})")
        raise AssertionError(f"build.sh failed:\n{built.stderr}")
    deb = pathlib.Path(built.stdout.strip().splitlines()[-1])
    target = base / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True, timeout=60)
    return deb, target


def _field(deb: pathlib.Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()  # fmt: skip


def test_package_holds_agent_and_unit(unpacked: tuple[pathlib.Path, pathlib.Path]) -> None:
    deb, root = unpacked
    assert _field(deb, "Package") == "swarmdeploy-agent"
    assert "bubblewrap" in _field(deb, "Depends") and "python3 (>= 3." in _field(deb, "Depends")
    unit = root / "lib/systemd/system/swarmdeploy-agent.service"
    assert unit.read_bytes() == agent_unit(PACKAGED_EXEC).content
    assert (root / "usr/bin/swarmdeploy").readlink() == pathlib.Path(PACKAGED_EXEC)
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True, timeout=30).stdout  # fmt: skip
    assert "root/root" in listing and "/tmp/" not in listing


def test_unpacked_agent_runs_and_has_no_server_stack(
    unpacked: tuple[pathlib.Path, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    _, root = unpacked
    program = root / PACKAGED_EXEC.lstrip("/")
    helped = subprocess.run([str(program), "agent", "--help"], capture_output=True, text=True,
                            timeout=60, check=False, env=clean_env())  # fmt: skip
    assert helped.returncode == 0 and "--trust-anchor" in helped.stdout, helped.stderr
    probe = "import importlib.util as u, sys; print(*(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run(
        [str(program.parent / "python"), "-c", probe, *SERVER_STACK, "zmq", "nacl", "msgspec"],
        capture_output=True, text=True, timeout=60, check=True, env=clean_env(),
    ).stdout.split()  # fmt: skip
    assert found == ["zmq", "nacl", "msgspec"]
    dry = subprocess.run([str(program), "agent", "install", "--manager", "http://m:8080",
                          "--trust-anchor", str(anchor_file(tmp_path)),
                          "--root", str(tmp_path / "device"), "--dry-run"],
                         capture_output=True, text=True, timeout=60, check=False,
                         env=clean_env())  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert f"ExecStart={program} agent --data-dir" in dry.stdout  # the package's program


def test_unpacked_agent_registers_with_a_real_manager(
    unpacked: tuple[pathlib.Path, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    _, root = unpacked
    with LocalFleet(tmp_path) as fleet:
        fleet.start_manager()
        [token] = fleet.tokens("deb", 1)
        start_registering_agent(fleet, [str(root / PACKAGED_EXEC.lstrip("/"))], "deb-1", token)
        fleet.wait_online(["deb-1"], timeout_s=60)
        assert fleet.target("deb-1")["tags"] == ["packaged"]
