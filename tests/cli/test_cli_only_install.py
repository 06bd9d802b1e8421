"""``pip install 'swarmdeploy[cli]'`` in a fresh venv: the operator CLI alone (typer, rich,
httpx, websockets), no server stack, working against a real manager.

The wheelhouse is built with ``pip wheel`` (the project's wheel plus its ``cli`` dependencies,
from pip's cache or the index); the fresh venv (no system site-packages, no pip of its own)
installs from that wheelhouse only (``--no-index``). About 10 s on the CI machine. Skipped,
with the reason shown, only when the dependencies cannot be fetched (offline).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import venv

import pytest

from tests.cli.manager_proc import free_port, running_manager

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Distributions (import names) the CLI-only install must not bring.
SERVER_STACK = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "zmq", "nicegui", "asyncpg",
                "prometheus_client", "cryptography", "nacl", "psutil")  # fmt: skip
OFFLINE_HINTS = ("NewConnectionError", "Temporary failure in name resolution",
                 "Network is unreachable", "No matching distribution found")  # fmt: skip


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def cli_venv(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A fresh venv holding ``swarmdeploy[cli]`` installed from a local wheelhouse."""
    base = tmp_path_factory.mktemp("cli-only")
    wheels, env_dir = base / "wheels", base / "venv"
    built = _pip("wheel", "-w", str(wheels), f"{ROOT}[cli]")
    if built.returncode != 0:
        if any(hint in built.stderr for hint in OFFLINE_HINTS):
            pytest.skip(f"offline: cannot fetch the cli dependencies ({built.stderr[-300:]})")
        raise AssertionError(f"pip wheel failed:\n{built.stderr}")
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    found = ["--no-index", "--find-links", str(wheels)]
    installed = _pip("--python", str(python), "install", *found, "swarmdeploy[cli]")
    assert installed.returncode == 0, installed.stderr
    return env_dir


def _run(env_dir: pathlib.Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SWARMDEPLOY_", "PYTHON"))}
    return subprocess.run(
        [str(env_dir / "bin" / "swarmdeploy"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **env},
        cwd=env_dir,
    )


def test_cli_extra_has_no_server_stack(cli_venv: pathlib.Path) -> None:
    probe = "import importlib.util as u, sys; print(*(m for m in sys.argv[1:] if u.find_spec(m)))"
    python = str(cli_venv / "bin" / "python")
    found = subprocess.run(
        [python, "-c", probe, *SERVER_STACK, "typer", "rich", "httpx"],
        capture_output=True, text=True, timeout=60, check=True, cwd=cli_venv,
    ).stdout.split()  # fmt: skip
    assert found == ["typer", "rich", "httpx"]


def test_help_works_and_manager_names_its_extra(cli_venv: pathlib.Path) -> None:
    helped = _run(cli_venv, "--help")
    assert helped.returncode == 0 and "targets" in helped.stdout, helped.stderr
    manager = _run(cli_venv, "manager", "--data-dir", "x")
    assert manager.returncode == 2
    lines = manager.stderr.strip().splitlines()
    assert len(lines) == 1 and "'manager' extra" in lines[0], manager.stderr
    assert "swarmdeploy[manager]" in lines[0] and "Traceback" not in manager.stderr
    agent = _run(cli_venv, "agent", "--data-dir", "x")
    assert agent.returncode == 2 and "'agent' extra" in agent.stderr, agent.stderr


def test_targets_list_against_a_real_manager(
    cli_venv: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    ports = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]
    with running_manager(tmp_path / "m", "--no-gui", *ports) as (base, key):
        listed = _run(cli_venv, "-o", "json", "targets", "list",
                      SWARMDEPLOY_URL=base, SWARMDEPLOY_API_KEY=key)  # fmt: skip
        refused = _run(cli_venv, "targets", "list", SWARMDEPLOY_URL=base,
                       SWARMDEPLOY_API_KEY="wrong")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert (doc["total"], doc["items"], doc["page"]) == (0, [], 1), doc
    assert refused.returncode == 1 and "401" in refused.stderr + refused.stdout
