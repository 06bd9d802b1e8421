"""How each stage of a task is confined: its directories, the sandbox launcher built from
the manifest's :class:`~swarmdeploy.protocol.manifest.SandboxPolicy`, and the sealed,
fingerprinted install dir (issue 5, ADR 0004, ``docs/security.md``).

A task's directory ``DIR/tasks/<task>`` holds (mode 0700, owned by the agent):

* ``task.msgpack`` -- the signed ``task`` message, re-verified before every start; never
  visible to sandboxed commands;
* ``app/`` -- the install dir: unpacked artifacts, writable by the install (or build)
  commands, then **sealed** (:func:`~swarmdeploy.agent.taskdirs.seal`: root-owned, readable
  but not writable by the sandbox user) and fingerprinted (``tree.sha256``); run commands
  see it read-only and run in it;
* ``work/`` -- writable in every stage and ``$HOME`` of the commands: where a deployment
  keeps its data.

With bubblewrap the sandbox user reaches these 0700 dirs through bwrap's mounts. Without it
(a root agent switching to the sandbox user with ``setpriv`` only), the data dir, ``tasks``
and the task dir get the search bit for others (0711: enter, not list) so that ``$HOME``
and the install dir can be reached by path; every file in them stays 0600.

Blocking work (ownership changes, digests) is for a worker thread (``in_thread``).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from swarmdeploy.agent.errors import TaskRefused
from swarmdeploy.agent.fsutil import atomic_write
from swarmdeploy.agent.grants import policy_refusals
from swarmdeploy.agent.process import Launcher, child_env
from swarmdeploy.agent.sandbox import SandboxConfig, fallback_warning, make_launcher
from swarmdeploy.agent.taskdirs import hand_over, seal, tree_digest
from swarmdeploy.protocol.manifest import SandboxPolicy

logger = logging.getLogger(__name__)

APP_DIR = "app"
WORK_DIR = "work"
DIGEST_FILE = "tree.sha256"
SANDBOX_BWRAP = "bwrap"
SANDBOX_USER = "unprivileged_user"
SANDBOX_NONE = "none"
#: How ``--terminal sandboxed`` confines a command: the strict default, network shared.
TERMINAL_POLICY = SandboxPolicy(network=True)


@dataclass(frozen=True, slots=True)
class TaskDirs:
    """The directories of one task (see the module docstring)."""

    root: Path

    @property
    def app(self) -> Path:
        """The install (or build) dir."""
        return self.root / APP_DIR

    @property
    def work(self) -> Path:
        """The writable data dir, ``$HOME`` of the commands."""
        return self.root / WORK_DIR


class Confinement:
    """Builds the launcher of each stage (see the module docstring) from the agent's
    :class:`~swarmdeploy.agent.sandbox.SandboxConfig` (pass ``SandboxConfig.detect(hidden=
    [data_dir])``)."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config

    @property
    def kind(self) -> str:
        """``bwrap``, ``unprivileged_user`` (no bubblewrap, root agent: setpriv only) or
        ``none`` (no bubblewrap, agent not root: the agent's own user, no isolation)."""
        if self.config.bwrap is not None:
            return SANDBOX_BWRAP
        return SANDBOX_USER if self.config.privileged else SANDBOX_NONE

    def warn_if_degraded(self) -> None:
        """Log once, at agent start, that commands run without bubblewrap."""
        if self.kind != SANDBOX_BWRAP:
            logger.warning("%s", fallback_warning(self.config, SandboxPolicy()))

    def check_grants(self, policy: SandboxPolicy) -> None:
        """Raise :class:`TaskRefused` (``sandbox_refused``) naming every device, path,
        group and limit of ``policy`` that this agent's grants and ceilings do not allow
        (issue 9/14: the device's owner decides, not the manifest)."""
        refused = policy_refusals(policy, self.config.grants, self.config.hidden)
        if refused:
            raise TaskRefused("sandbox_refused", "this device does not grant " + "; ".join(refused))

    def env(self, dirs: TaskDirs) -> dict[str, str]:
        """The commands' environment: the agent's safe variables, ``HOME`` = work dir."""
        return child_env({"HOME": str(dirs.work)})

    def writable_stage(self, dirs: TaskDirs, policy: SandboxPolicy) -> Launcher:
        """Install or build: ``app`` and ``work`` writable, given to the sandbox user
        (blocking). Raises :class:`~swarmdeploy.agent.errors.LaunchError` for a policy
        this agent does not allow."""
        launcher = make_launcher(
            self.config, policy, writable=[dirs.work, dirs.app], quiet=True
        )  # checks the policy before anything changes owner
        dirs.work.mkdir(mode=0o700, exist_ok=True)
        hand_over([dirs.app, dirs.work], policy, self.config)
        self._reachable(dirs)
        return launcher

    def run_stage(self, dirs: TaskDirs, policy: SandboxPolicy) -> Launcher:
        """Run: ``work`` writable, ``app`` read-only (blocking)."""
        launcher = make_launcher(
            self.config, policy, writable=[dirs.work], readonly=[dirs.app], quiet=True
        )
        if not dirs.work.exists():
            dirs.work.mkdir(mode=0o700)
        if self.config.privileged and os.stat(dirs.work).st_uid != policy.uid:
            hand_over([dirs.work], policy, self.config)
        self._reachable(dirs)
        return launcher

    def terminal_stage(self, directory: Path) -> Launcher:
        """A sandboxed terminal command (``--terminal sandboxed``, blocking): the default
        policy with the network shared, ``directory`` writable and given to the sandbox
        user."""
        policy = TERMINAL_POLICY
        launcher = make_launcher(self.config, policy, writable=[directory], quiet=True)
        hand_over([directory], policy, self.config)
        if self.kind == SANDBOX_USER:
            _searchable_by_others([directory.parent])
        return launcher

    def _reachable(self, dirs: TaskDirs) -> None:
        """Without bubblewrap: let the sandbox user traverse data dir, ``tasks`` and the task
        dir (search bit only; see the module docstring)."""
        if self.kind == SANDBOX_USER:
            _searchable_by_others([dirs.root.parent.parent, dirs.root.parent, dirs.root])

    def seal(self, dirs: TaskDirs, policy: SandboxPolicy) -> str:
        """After the install stage: seal ``app``, record and return its tree digest."""
        seal(dirs.app, policy, self.config)
        digest = tree_digest(dirs.app)
        atomic_write(dirs.root / DIGEST_FILE, digest.encode(), 0o600)
        return digest


def _searchable_by_others(directories: list[Path]) -> None:
    """Add the search bit for others (enter, not list) where it is missing."""
    for directory in directories:
        mode = os.stat(directory).st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)


def recorded_digest(dirs: TaskDirs) -> str:
    """The tree digest recorded after the install ("" if there is none)."""
    try:
        return (dirs.root / DIGEST_FILE).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def check_tree(dirs: TaskDirs, recorded: str) -> None:
    """Raise :class:`TaskRefused` (``tampered_install``) unless the install dir still has
    the digest recorded after install (blocking)."""
    if not recorded:
        raise TaskRefused("tampered_install", "no digest of the installed files was recorded")
    try:
        digest = tree_digest(dirs.app)
    except OSError as exc:
        raise TaskRefused("tampered_install", f"the install dir is unreadable: {exc}") from None
    if digest != recorded:
        raise TaskRefused("tampered_install", "the installed files were modified since the install")
