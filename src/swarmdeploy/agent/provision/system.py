"""The seam to the running system: PID 1, whether this process is root, and ``systemctl``.

:class:`HostSystem` is the real one; tests pass a recording fake. Nothing here is used unless
the root being provisioned is ``/`` (``live``): an image or a test's directory tree never
touches the machine it is prepared on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from swarmdeploy.agent.errors import AgentFatalError


class ProvisionError(AgentFatalError):
    """``agent install|uninstall|provision`` cannot go on (the message says why)."""

    code = "provision_failed"


class System(Protocol):
    """What install and uninstall need from the machine they run on."""

    def pid1(self) -> str:
        """The name of process 1 (``systemd`` when systemd runs the machine)."""

    def is_root(self) -> bool:
        """Whether this process may change system services."""

    def run(self, argv: Sequence[str]) -> None:
        """Run a command; :class:`ProvisionError` naming it when it fails."""


class HostSystem:
    """The machine this process runs on."""

    def pid1(self) -> str:
        """Read ``/proc/1/comm`` (empty when it cannot be read)."""
        try:
            return Path("/proc/1/comm").read_text().strip()
        except OSError:
            return ""

    def is_root(self) -> bool:
        """Effective uid 0."""
        return os.geteuid() == 0

    def run(self, argv: Sequence[str]) -> None:
        """Run ``argv`` (60 s at most), its output passed through."""
        try:
            done = subprocess.run(list(argv), check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProvisionError(f"cannot run {' '.join(argv)}: {exc}") from None
        if done.returncode != 0:
            raise ProvisionError(f"{' '.join(argv)} failed with exit status {done.returncode}")
