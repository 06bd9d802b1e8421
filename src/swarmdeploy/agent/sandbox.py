"""Sandboxed execution of install and run commands (seed 000 "jail", issue 5).

Two :class:`~swarmdeploy.agent.process.Launcher` implementations, chosen by
:func:`make_launcher`:

* :class:`BwrapLauncher` -- bubblewrap: read-only system (``--ro-bind / /``), fresh ``/proc``,
  minimal ``/dev``, private ``/tmp``, the agent's data dir hidden under an empty tmpfs, only
  the task's writable dirs bound read-write at their real paths (so ``cwd`` is the same
  inside), new IPC/PID/UTS/cgroup namespaces and a new network namespace (only ``lo``) unless
  the policy allows the network, hostname ``sandbox``, ``--die-with-parent``;
* :class:`FallbackLauncher` -- no bubblewrap: the same user switch and limits, no isolation
  (a warning is logged once per launcher, or once by the daemon with ``quiet``).

**Why not ``bwrap --uid 65534``** (ADR 0004): run by root, bwrap maps the sandbox uid to
root's uid in a user namespace, so "uid 65534" *is* root for every file outside -- it could
read ``/etc/shadow`` and the agent's keys (measured). Instead bwrap runs without a user
namespace, keeps only ``CAP_SETUID``/``CAP_SETGID``/``CAP_SETPCAP`` (and
``CAP_DAC_READ_SEARCH``, to enter a 0700 task dir of the sandbox user) and ``setpriv`` drops to
the real unprivileged uid/gid with no capabilities, an empty bounding set and
``no_new_privs``; ``prlimit`` sets resource limits before that. An agent that is not root
uses ``--unshare-user --uid --cap-drop ALL`` (it has nothing to lose).

**Stop** (:func:`~swarmdeploy.agent.process.terminate_group`, ``docs/adr/0003``): bwrap's
outer process does not handle SIGTERM, and when it dies ``--die-with-parent`` SIGKILLs the
whole sandbox at once, so it must not get the SIGTERM. The stop finds it as the parent of a
PID namespace's init (``namespace_keepers``) and sends SIGTERM to every other process of the
run by pid -- the commands inside, also with ``new_session`` (they left the group but are
the leader's descendants); bwrap's init ignores it, as a namespace init does. The commands
run their TERM handlers; when the last one has exited, the init and bwrap exit with its
status. After the grace period SIGKILL goes to all, bwrap included, and the namespace dies
with it. Nothing survives (tests/agent/test_sandbox_stop.py).

The environment is the launch spec's explicit one (``child_env``), inherited through bwrap
rather than re-set with ``--clearenv``/``--setenv``: values in argv would be readable by
every local user in ``/proc/<pid>/cmdline``. For the same reason the command itself travels
in the environment (:data:`COMMAND_VAR`) and runs as ``sh -c 'eval "$SWARMDEPLOY_COMMAND"'``.

Directories (``agent/taskdirs.py``): ``hand_over`` gives the task's writable dirs to the
sandbox user; ``seal`` makes an installed tree read-only for it (owned by root, group =
sandbox gid, no write), and ``tree_digest`` fingerprints it so that changes are detected
before every start. The agent runs with umask 077, so its own directories are 0700: with
bubblewrap the parents the sandbox user cannot traverse become empty tmpfs (``_Mounts``);
without it the command is started in its working directory before the user switch.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import msgspec

from swarmdeploy.agent.errors import LaunchError
from swarmdeploy.agent.fsutil import DiskReserve, atomic_write
from swarmdeploy.agent.grants import (
    SandboxGrants,
    clean_path,
    policy_refusals,
    supplementary_gids,
)
from swarmdeploy.agent.hardening import which
from swarmdeploy.agent.limits import effective_rlimits
from swarmdeploy.agent.process import TERM_PRELUDE, LaunchSpec
from swarmdeploy.agent.seccomp import filter_program
from swarmdeploy.protocol.manifest import NOBODY, Rlimits, SandboxPolicy

logger = logging.getLogger(__name__)

__all__ = [
    "COMMAND_VAR",
    "NOBODY",
    "BwrapLauncher",
    "FallbackLauncher",
    "Rlimits",
    "SandboxConfig",
    "SandboxGrants",
    "SandboxPolicy",
    "check_policy",
    "detect_bwrap",
    "make_launcher",
]

SANDBOX_HOSTNAME = "sandbox"
#: Environment variable through which sandboxed commands receive their command line.
COMMAND_VAR = "SWARMDEPLOY_COMMAND"
#: A fresh tmpfs inside the sandbox, not the host's /tmp.
SANDBOX_TMP = "/tmp"  # noqa: S108
_PROBE_TIMEOUT_S = 10.0
#: Capabilities bwrap keeps (only until ``setpriv`` switches user and clears them all).
_SWITCH_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH")
#: File (in the agent's data dir) holding the seccomp program bwrap loads.
SECCOMP_FILE = "seccomp.bpf"
#: The descriptor bwrap reads the seccomp program from (opened by a ``sh`` that execs bwrap).
_SECCOMP_FD = 3


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """The agent's sandbox settings (typed, from the entry point; see :meth:`detect`).
    ``seccomp`` is the file of the seccomp program bwrap loads (None: no filter)."""

    bwrap: str | None
    setpriv: str | None = "/usr/bin/setpriv"
    prlimit: str | None = "/usr/bin/prlimit"
    privileged: bool = True
    hidden: tuple[Path, ...] = ()
    grants: SandboxGrants = field(default_factory=SandboxGrants)
    seccomp: Path | None = None
    new_session: bool = False
    shell: str = "/bin/sh"

    @classmethod
    def detect(
        cls,
        *,
        hidden: Iterable[Path] = (),
        probe: bool = True,
        grants: SandboxGrants | None = None,
        seccomp_dir: Path | None = None,
        reserve: DiskReserve | None = None,
    ) -> SandboxConfig:
        """Settings for this machine: tools found on ``PATH``, root or not, ``hidden`` dirs
        (pass the agent's data dir), the owner's ``grants``; with bubblewrap and a filter
        for this architecture, the seccomp program is written to ``seccomp_dir`` -- unless
        it is there already, so that an agent starts on a full disk (with ``reserve`` freed
        for it if it must be written, docs/reliability.md)."""
        bwrap = detect_bwrap(probe=probe)
        seccomp = None
        program = filter_program()
        if bwrap is not None and seccomp_dir is not None and program is not None:
            seccomp = seccomp_dir / SECCOMP_FILE
            if _read_or_none(seccomp) != program:
                atomic_write(seccomp, program, 0o600, reserve)
        return cls(
            bwrap=bwrap,
            setpriv=which("setpriv"),
            prlimit=which("prlimit"),
            privileged=os.geteuid() == 0,
            hidden=tuple(hidden),
            grants=grants or SandboxGrants(),
            seccomp=seccomp,
        )

    @property
    def counts_own_processes(self) -> bool:
        """Whether ``RLIMIT_NPROC`` would count the agent's own processes: an agent that is
        not root and has no bubblewrap runs commands as its own uid outside any user
        namespace, so the limit would count every process of that user (measured: inside
        bwrap's user namespace only the namespace's processes count). No process limit
        is applied then, and none is reported."""
        return not self.privileged and self.bwrap is None

    def report(self) -> dict[str, object]:
        """What this device enforces, for ``hello``/``health`` (``security.confinement``):
        the limit ceilings and their mechanism, whether a seccomp filter is loaded (which
        blocks new user namespaces) and what may be granted."""
        from swarmdeploy.agent.limits import ceilings_report

        grants = self.grants
        limits = ceilings_report(grants.ceilings)
        if self.counts_own_processes:
            limits["processes"] = 0
        return {
            "limits": limits,
            "seccomp": self.seccomp is not None,
            "userns_blocked": self.seccomp is not None,
            "devices": list(grants.devices),
            "paths": [{"path": str(p), "rw": False} for p in grants.ro_prefixes]
            + [{"path": str(p), "rw": True} for p in grants.rw_prefixes],
            "groups": [name for name, _ in grants.groups],
        }


def _bwrap_namespaces(network: bool) -> list[str]:
    flags = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    return flags if network else [*flags, "--unshare-net"]


def detect_bwrap(
    path: str | None = None, *, probe: bool = True, privileged: bool | None = None
) -> str | None:
    """The path of a working ``bwrap``, or None (logged) when missing or unusable here
    (e.g. namespaces forbidden in a container). ``probe`` runs it once with the flags the
    launcher will use (a user namespace unless ``privileged``, default: running as root)."""
    found = which("bwrap", path)
    if found is None or not probe:
        return found
    root = os.geteuid() == 0 if privileged is None else privileged
    userns = [] if root else ["--unshare-user"]
    argv = [found, "--ro-bind", "/", "/", "--proc", "/proc", *userns, *_bwrap_namespaces(False)]
    try:
        done = subprocess.run([*argv, "true"], capture_output=True, timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("bubblewrap at %s cannot run: %s", found, exc)
        return None
    if done.returncode != 0:
        logger.warning("bubblewrap at %s fails: %s", found, done.stderr.decode(errors="replace"))
        return None
    return found


def check_policy(policy: SandboxPolicy, config: SandboxConfig) -> None:
    """Raise :class:`LaunchError` naming everything
    :func:`~swarmdeploy.agent.grants.policy_refusals` finds."""
    refused = policy_refusals(policy, config.grants, config.hidden)
    if refused:
        raise LaunchError("this device does not grant: " + "; ".join(refused))


def _gids(policy: SandboxPolicy, config: SandboxConfig) -> tuple[int, ...]:
    return supplementary_gids(policy, config.grants)


def _shell(config: SandboxConfig) -> list[str]:
    """The shell running the command taken from the environment: the command stays out of
    every argv (``/proc/<pid>/cmdline`` is world-readable, and process listings then show
    the command's own processes, not wrappers holding its text).

    The shell outlives what it started on SIGTERM (:data:`~swarmdeploy.agent.process.
    TERM_PRELUDE`): its death would end bwrap's PID namespace, SIGKILLing a service such as
    ``./svc.sh`` in the middle of its TERM handler (docs/reliability.md)."""
    return [config.shell, "-c", f'{TERM_PRELUDE}eval "${COMMAND_VAR}"']


def _user_switch(config: SandboxConfig, policy: SandboxPolicy) -> list[str]:
    """``setpriv`` to the policy's uid/gid with no capabilities (root agents only)."""
    if not config.privileged:
        return []
    if config.setpriv is None:
        raise LaunchError("setpriv (util-linux) is needed to run commands unprivileged")
    gids = _gids(policy, config)
    groups = ["--groups", ",".join(map(str, gids))] if gids else []
    return [
        config.setpriv,
        f"--reuid={policy.uid}",
        f"--regid={policy.gid}",
        *(groups or ["--clear-groups"]),
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def _limits(config: SandboxConfig, policy: SandboxPolicy) -> list[str]:
    """``prlimit`` with the policy's limits, each unset one at the agent's ceiling. Not
    ``RLIMIT_NPROC`` where :meth:`SandboxConfig.counts_own_processes`."""
    limits = effective_rlimits(policy.rlimits, config.grants.ceilings)
    if config.counts_own_processes:
        limits = msgspec.structs.replace(limits, nproc=0)
    args = limits.prlimit_args()
    if not args:
        return []
    if config.prlimit is None:
        raise LaunchError("prlimit (util-linux) is needed for resource limits")
    return [config.prlimit, *args, "--"]


def _searchable(path: PurePosixPath, user: tuple[int, frozenset[int]]) -> bool:
    """Whether ``user`` (uid, gids) may traverse the host directory ``path`` (mode bits)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    uid, gids = user
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in gids:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


@dataclass
class _Mounts:
    """Builds bwrap's mount options so that every bound path is reachable by the sandbox
    user at its real path:

    * a host directory on the way that the user could not traverse (e.g. ``/root`` or a 0700
      parent of the data dir) is replaced by an empty tmpfs -- hiding nothing the user could
      have seen;
    * directories bwrap creates on a tmpfs get mode 0755 (the agent's umask 077 would make
      them 0700).
    """

    user: tuple[int, frozenset[int]]
    roots: list[PurePosixPath] = field(default_factory=lambda: [PurePosixPath(SANDBOX_TMP)])
    made: set[PurePosixPath] = field(default_factory=set)
    args: list[str] = field(default_factory=list)

    def _on_tmpfs(self, path: PurePosixPath) -> bool:
        return any(root == path or root in path.parents for root in self.roots)

    def _parents(self, dest: PurePosixPath) -> None:
        for parent in reversed(dest.parents):
            if self._on_tmpfs(parent):
                if parent not in self.made and parent not in self.roots:
                    self.made.add(parent)
                    self.args += ["--perms", "0755", "--dir", str(parent)]
            elif not _searchable(parent, self.user):
                self.args += ["--perms", "0755", "--tmpfs", str(parent)]
                self.roots.append(parent)

    def tmpfs(self, dest: PurePosixPath) -> None:
        self._parents(dest)
        self.args += ["--perms", "0755", "--tmpfs", str(dest)]
        self.roots.append(dest)

    def bind(self, option: str, path: PurePosixPath) -> None:
        if not os.path.exists(path):
            raise LaunchError(f"sandbox path {str(path)!r} does not exist")
        self._parents(path)
        self.args += [option, str(path), str(path)]


def _mount_args(
    config: SandboxConfig,
    policy: SandboxPolicy,
    writable: Iterable[PurePosixPath],
    readonly: Iterable[PurePosixPath],
) -> list[str]:
    if config.privileged:
        user = (policy.uid, frozenset((policy.gid, *_gids(policy, config))))
    else:  # the sandbox runs with the agent's own credentials
        user = (os.geteuid(), frozenset((os.getegid(), *os.getgroups())))
    mounts = _Mounts(user)
    base = ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    mounts.args += [*base, "--perms", "1777", "--tmpfs", SANDBOX_TMP]
    for hidden in config.hidden:
        mounts.tmpfs(PurePosixPath(hidden))
    for path in (*writable, *map(PurePosixPath, policy.rw_paths)):
        mounts.bind("--bind", path)
    for path in (*readonly, *map(PurePosixPath, policy.ro_paths)):
        mounts.bind("--ro-bind", path)  # after the writable ones: a read-only subdir stays so
    for device in policy.devices:
        mounts.bind("--dev-bind", PurePosixPath(device))
    return mounts.args


class BwrapLauncher:
    """Runs each command as ``[sh -c 'exec "$@" 3<seccomp.bpf'] bwrap <isolation> [--seccomp
    3] -- prlimit [setpriv] sh -c <command>``.

    ``writable`` (e.g. the task and state dirs) are bound read-write and ``readonly`` bound
    read-only, both at their real paths; they must exist, and for a root agent belong to the
    policy's uid (see :func:`hand_over`). Raises :class:`LaunchError` at construction for a
    policy the config refuses or a missing tool, and from :meth:`argv` for a missing path.
    """

    def __init__(
        self,
        config: SandboxConfig,
        policy: SandboxPolicy,
        *,
        writable: Iterable[Path] = (),
        readonly: Iterable[Path] = (),
    ) -> None:
        if config.bwrap is None:
            raise LaunchError("bubblewrap is not available")
        check_policy(policy, config)
        self.config = config
        self.policy = policy
        self.writable = tuple(clean_path(str(p), "writable dir") for p in writable)
        self.readonly = tuple(clean_path(str(p), "read-only dir") for p in readonly)
        self._tail = [*_limits(config, policy), *_user_switch(config, policy), *_shell(config)]

    def _isolation(self) -> list[str]:
        config, policy = self.config, self.policy
        args = [*_bwrap_namespaces(policy.network), "--hostname", SANDBOX_HOSTNAME]
        args += ["--die-with-parent", *(["--new-session"] if config.new_session else [])]
        if config.seccomp is not None:
            args += ["--seccomp", str(_SECCOMP_FD)]
        if config.privileged:  # no user namespace: setpriv drops to the real uid (see above)
            args += ["--cap-drop", "ALL"]
            for cap in _SWITCH_CAPS:
                args += ["--cap-add", cap]
        else:
            args += ["--unshare-user", "--uid", str(policy.uid), "--gid", str(policy.gid)]
            args += ["--cap-drop", "ALL"]
        return args

    def argv(self, spec: LaunchSpec) -> list[str]:
        """The bwrap command line for ``spec`` (cwd is entered inside the sandbox)."""
        assert self.config.bwrap is not None
        mounts = _mount_args(self.config, self.policy, self.writable, self.readonly)
        home = str(self.writable[0]) if self.writable else str(spec.cwd)
        env = ["--setenv", "HOME", home, "--setenv", "TMPDIR", SANDBOX_TMP]
        env += ["--unsetenv", "USER", "--unsetenv", "LOGNAME"]
        where = ["--chdir", str(spec.cwd)]
        return [
            *self._seccomp_opener(),
            self.config.bwrap,
            *mounts,
            *self._isolation(),
            *env,
            *where,
            "--",
            *self._tail,
        ]

    def _seccomp_opener(self) -> list[str]:
        """``sh -c 'exec "$@" 3<FILE'``: opens the seccomp program on bwrap's ``--seccomp``
        descriptor and becomes bwrap (same pid). Each start reads the file afresh, and the
        process launcher needs no descriptor passing."""
        if self.config.seccomp is None:
            return []
        opener = f'exec "$@" {_SECCOMP_FD}<"$0"'
        return [self.config.shell, "-c", opener, str(self.config.seccomp)]

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        """The spec's environment plus :data:`COMMAND_VAR` (the command, kept out of argv)."""
        return {**spec.env, COMMAND_VAR: spec.command}


class FallbackLauncher:
    """Without bubblewrap: ``[prlimit] [setpriv] sh -c <command>`` -- the unprivileged user
    and the limits, but no read-only system, no hidden data dir and no network isolation.
    Logs a warning when created unless ``quiet`` (the daemon warns once at start)."""

    def __init__(self, config: SandboxConfig, policy: SandboxPolicy, *, quiet: bool = False):
        check_policy(policy, config)
        self._head = [*_limits(config, policy), *_user_switch(config, policy), *_shell(config)]
        if not quiet:
            logger.warning("%s", fallback_warning(config, policy))

    def argv(self, spec: LaunchSpec) -> list[str]:
        """``[prlimit ...] [setpriv ...] sh -c 'eval "$SWARMDEPLOY_COMMAND"'``."""
        return list(self._head)

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        """The spec's environment plus :data:`COMMAND_VAR` (the command, kept out of argv)."""
        return {**spec.env, COMMAND_VAR: spec.command}


def fallback_warning(config: SandboxConfig, policy: SandboxPolicy) -> str:
    """The warning for commands run without bubblewrap."""
    who = f"uid {policy.uid}" if config.privileged else "the agent's own user"
    return (
        f"bubblewrap is not available: commands run as {who} without a sandbox "
        "(the system is writable where that user may write; network is not restricted)"
    )


def make_launcher(
    config: SandboxConfig,
    policy: SandboxPolicy,
    *,
    writable: Iterable[Path] = (),
    readonly: Iterable[Path] = (),
    quiet: bool = False,
) -> BwrapLauncher | FallbackLauncher:
    """The sandbox launcher for one task stage: bubblewrap when available, else fallback
    (which warns unless ``quiet``)."""
    if config.bwrap is None:
        return FallbackLauncher(config, policy, quiet=quiet)
    return BwrapLauncher(config, policy, writable=writable, readonly=readonly)
