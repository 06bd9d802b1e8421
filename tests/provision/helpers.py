"""Shared pieces of the provisioning tests: a trust anchor, a recording system, env files."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    users: dict[str, tuple[int, int]] = field(default_factory=dict)
    programs: tuple[str, ...] = ("systemd-sysusers",)
    commands: list[list[str]] = field(default_factory=list)
    chowned: list[tuple[pathlib.Path, tuple[int, int]]] = field(default_factory=list)

    def pid1(self) -> str:
        return self.pid1_name

    def is_root(self) -> bool:
        return self.root

    def user_ids(self, name: str) -> tuple[int, int] | None:
        return self.users.get(name)

    def has_program(self, name: str) -> bool:
        return name in self.programs

    def run(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))
        if argv[0] in ("systemd-sysusers", "useradd"):
            self.users["swarmdeploy"] = (990, 990)
        if argv[0] == "userdel":
            self.users.pop(argv[-1], None)

    def chown(self, path: pathlib.Path, ids: tuple[int, int]) -> None:
        self.chowned.append((path, ids))


def output() -> io.StringIO:
    """Where a command under test prints."""
    return io.StringIO()
