"""``pip install 'swarmdeploy[agent]'`` in a fresh venv: the agent alone (pyzmq, PyNaCl plus
the core msgspec and PyYAML), no server stack, no operator CLI, and it registers with a real
manager started from the main venv.

The wheelhouse is built with ``pip wheel`` (the project's wheel plus its ``agent``
dependencies, from pip's cache or the index); the fresh venv (no system site-packages, no
pip of its own) installs from that wheelhouse only (``--no-index``). About 10 s on the CI
machine. Skipped, with the reason shown, only when the dependencies cannot be fetched.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import venv

import pytest

from swarmdeploy.localfleet import LocalFleet
from tests.provision.helpers import OFFLINE_HINTS, clean_env, start_registering_agent

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Import names the agent-only install must not bring (server stack and operator CLI).
NOT_ON_A_DEVICE = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "nicegui", "asyncpg",
                   "alembic", "prometheus_client", "cryptography", "psutil", "typer", "rich",
                   "httpx", "pydantic")  # fmt: skip


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A fresh venv holding ``swarmdeploy[agent]`` installed from a local wheelhouse."""
    base = tmp_path_factory.mktemp("agent-only")
    wheels, env_dir = base / "wheels", base / "venv"
    built = _pip("wheel", "-w", str(wheels), f"{ROOT}[agent]")
    if built.returncode != 0:
        if any(hint in built.stderr for hint in OFFLINE_HINTS):
            pytest.skip(f"offline: cannot fetch the agent dependencies ({built.stderr[-300:]})")
        raise AssertionError(f"pip wheel failed:\n{built.stderr}")
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    found = ["--no-index", "--find-links", str(wheels)]
    installed = _pip("--python", str(python), "install", *found, "swarmdeploy[agent]")
    assert installed.returncode == 0, installed.stderr
    return env_dir


def test_agent_extra_has_no_server_stack(agent_venv: pathlib.Path) -> None:
    probe = "import importlib.util as u, sys; print(*(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run(
        [str(agent_venv / "bin" / "python"), "-c", probe, *NOT_ON_A_DEVICE, "zmq", "nacl"],
        capture_output=True, text=True, timeout=60, check=True, cwd=agent_venv,
        env=clean_env(),
    ).stdout.split()  # fmt: skip
    assert found == ["zmq", "nacl"]


def test_agent_help_works(agent_venv: pathlib.Path) -> None:
    program = str(agent_venv / "bin" / "swarmdeploy")
    for args in (["agent", "--help"], ["agent", "provision", "--help"]):
        helped = subprocess.run([program, *args], capture_output=True, text=True, timeout=60,
                                check=False, env=clean_env(), cwd=agent_venv)  # fmt: skip
        assert helped.returncode == 0 and "--trust-anchor" in helped.stdout, helped.stderr


def test_agent_only_install_registers_with_a_real_manager(
    agent_venv: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with LocalFleet(tmp_path) as fleet:
        fleet.start_manager()
        [token] = fleet.tokens("extra", 1)
        start_registering_agent(fleet, [str(agent_venv / "bin" / "swarmdeploy")], "lean-1", token)
        fleet.wait_online(["lean-1"], timeout_s=60)
        assert fleet.target("lean-1")["tags"] == ["packaged"]
