"""Shared pieces of the provisioning tests: a trust anchor, a recording system, env files."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from swarmdeploy.localfleet import SYSTEM_PATH, LocalFleet

#: A trust anchor file the agent accepts (a CA fingerprint pin).
ANCHOR_TEXT = "sha256:" + "ab" * 32 + "\n"


def anchor_file(directory: pathlib.Path) -> pathlib.Path:
    """Write :data:`ANCHOR_TEXT` into ``directory`` and return the file."""
    path = directory / "anchor.pem"
    path.write_text(ANCHOR_TEXT)
    return path


def read_env_file(path: pathlib.Path) -> dict[str, str]:
    """``KEY=value`` lines as systemd's EnvironmentFile= reads them (no quoting needed)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@dataclass
class RecordingSystem:
    """A :class:`~swarmdeploy.agent.provision.system.System` that records what it is asked."""

    pid1_name: str = "systemd"
    root: bool = True
    commands: list[list[str]] = field(default_factory=list)

    def pid1(self) -> str:
        return self.pid1_name

    def is_root(self) -> bool:
        return self.root

    def run(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))


def output() -> io.StringIO:
    """Where a command under test prints."""
    return io.StringIO()


#: Signs that pip could not reach the index (the test is skipped then, with the reason).
OFFLINE_HINTS = ("NewConnectionError", "Temporary failure in name resolution",
                 "Network is unreachable", "No matching distribution found")  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without SWARMDEPLOY_* and PYTHON* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARMDEPLOY_", "PYTHON"))}
    return {**env, "PATH": SYSTEM_PATH, **extra}


def start_registering_agent(
    fleet: LocalFleet, program: Sequence[str], name: str, token: str
) -> subprocess.Popen[bytes]:
    """Start ``program agent ...`` (another install of swarmdeploy) as agent ``name`` of the
    fleet, with its first-start token and the manager's CA as trust anchor; the fleet stops it."""
    data_dir = fleet.agent_dir(name)
    data_dir.mkdir(mode=0o700, parents=True)
    argv = [*program, "agent", "--data-dir", str(data_dir), "--manager", fleet.url,
            "--id", name, "--token", token, "--tags", "packaged",
            "--trust-anchor", str(fleet.manager_dir / "ca.pem")]  # fmt: skip
    with (fleet.root / f"agent-{name}.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=clean_env(), stdout=log, stderr=log, cwd=data_dir)
    fleet.agents[name] = proc
    return proc
