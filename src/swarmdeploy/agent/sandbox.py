"""Sandboxed execution of install and run commands (seed 000 "jail", issue 5).

Two :class:`~swarmdeploy.agent.process.Launcher` implementations, chosen by
:func:`make_launcher`:

* :class:`BwrapLauncher` -- bubblewrap: read-only system (``--ro-bind / /``), fresh ``/proc``,
  minimal ``/dev``, private ``/tmp``, the agent's data dir hidden under an empty tmpfs, only
  the task's writable dirs bound read-write at their real paths (so ``cwd`` is the same
  inside), new IPC/PID/UTS/cgroup namespaces and a new network namespace (only ``lo``) unless
  the policy allows the network, hostname ``sandbox``, ``--die-with-parent``;
* :class:`FallbackLauncher` -- no bubblewrap: the same user switch and limits, no isolation
  (a warning is logged once per launcher).

**Why not ``bwrap --uid 65534``** (ADR 0004): run by root, bwrap maps the sandbox uid to
root's uid in a user namespace, so "uid 65534" *is* root for every file outside -- it could
read ``/etc/shadow`` and the agent's keys (measured). Instead bwrap runs without a user
namespace, keeps only ``CAP_SETUID``/``CAP_SETGID``/``CAP_SETPCAP`` and ``setpriv`` drops to
the real unprivileged uid/gid with no capabilities, an empty bounding set and
``no_new_privs``; ``prlimit`` sets resource limits before that. An agent that is not root
uses ``--unshare-user --uid --cap-drop ALL`` (it has nothing to lose).

**Stop**: the agent kills the launcher's process group (``docs/adr/0003``). Without
``--new-session`` the sandboxed commands stay in that group and get SIGTERM first (graceful).
With ``new_session`` (TIOCSTI defence; unneeded here because commands have no controlling
terminal) they leave the group and die by SIGKILL when bwrap's PID namespace ends. Either way
nothing survives (tests/agent/test_sandbox.py).

The environment is the launch spec's explicit one (``child_env``), inherited through bwrap
rather than re-set with ``--clearenv``/``--setenv``: values in argv would be readable by
every local user in ``/proc/<pid>/cmdline``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated

import msgspec
from msgspec import Meta

from swarmdeploy.agent.errors import LaunchError
from swarmdeploy.agent.process import LaunchSpec

logger = logging.getLogger(__name__)

NOBODY = 65534
SANDBOX_HOSTNAME = "sandbox"
#: A fresh tmpfs inside the sandbox, not the host's /tmp.
SANDBOX_TMP = "/tmp"  # noqa: S108
_PROBE_TIMEOUT_S = 10.0
_Id = Annotated[int, Meta(ge=1, le=2**32 - 2)]
_Limit = Annotated[int, Meta(ge=0, le=2**62)]
_Path = Annotated[str, Meta(min_length=1, max_length=4096)]
_Paths = Annotated[tuple[_Path, ...], Meta(max_length=64)]
#: Capabilities bwrap keeps (only until ``setpriv`` switches user and clears them all).
_SWITCH_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")


class Rlimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Resource limits per command (0: not limited). ``nproc`` counts every process of the
    sandbox uid on the machine (``RLIMIT_NPROC`` semantics)."""

    cpu_s: _Limit = 0
    nofile: _Limit = 0
    address_space_bytes: _Limit = 0
    nproc: _Limit = 0
    fsize_bytes: _Limit = 0

    def prlimit_args(self) -> list[str]:
        """``prlimit`` options (soft = hard) for the limits that are set."""
        pairs = (
            ("--cpu", self.cpu_s),
            ("--nofile", self.nofile),
            ("--as", self.address_space_bytes),
            ("--nproc", self.nproc),
            ("--fsize", self.fsize_bytes),
        )
        return [f"{option}={value}" for option, value in pairs if value]


class SandboxPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a task's commands may do; part of the signed manifest (``sandbox`` field) so an
    operator's key, not the manager, decides it -- and shown in the API.

    Extra paths and devices are accepted only where the agent's own :class:`SandboxConfig`
    allows them (:func:`check_policy`): a manifest cannot open the device more widely than
    its owner provisioned.
    """

    network: bool = False
    uid: _Id = NOBODY
    gid: _Id = NOBODY
    groups: Annotated[tuple[_Id, ...], Meta(max_length=32)] = ()
    rlimits: Rlimits = Rlimits()
    ro_paths: _Paths = ()
    rw_paths: _Paths = ()
    devices: _Paths = ()


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """The agent's sandbox settings (typed, from the entry point; see :meth:`detect`)."""

    bwrap: str | None
    setpriv: str | None = "/usr/bin/setpriv"
    prlimit: str | None = "/usr/bin/prlimit"
    privileged: bool = True
    hidden: tuple[Path, ...] = ()
    allowed_rw_prefixes: tuple[Path, ...] = ()
    allowed_devices: tuple[str, ...] = ()
    new_session: bool = False
    shell: str = "/bin/sh"

    @classmethod
    def detect(cls, *, hidden: Iterable[Path] = (), probe: bool = True) -> SandboxConfig:
        """Settings for this machine: tools found on ``PATH``, root or not, ``hidden`` dirs
        (pass the agent's data dir)."""
        return cls(
            bwrap=detect_bwrap(probe=probe),
            setpriv=shutil.which("setpriv"),
            prlimit=shutil.which("prlimit"),
            privileged=os.geteuid() == 0,
            hidden=tuple(hidden),
        )


def _bwrap_namespaces(network: bool) -> list[str]:
    flags = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    return flags if network else [*flags, "--unshare-net"]


def detect_bwrap(
    path: str | None = None, *, probe: bool = True, privileged: bool | None = None
) -> str | None:
    """The path of a working ``bwrap``, or None (logged) when missing or unusable here
    (e.g. namespaces forbidden in a container). ``probe`` runs it once with the flags the
    launcher will use (a user namespace unless ``privileged``, default: running as root)."""
    found = shutil.which("bwrap", path=path)
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


def _clean_path(text: str, what: str) -> PurePosixPath:
    path = PurePosixPath(text)
    if not path.is_absolute() or ".." in path.parts or str(path) != text or text == "/":
        raise LaunchError(f"sandbox {what} {text!r} must be an absolute, normalised path below /")
    return path


def _under(path: PurePosixPath, prefixes: Iterable[Path]) -> bool:
    return any(path == PurePosixPath(p) or PurePosixPath(p) in path.parents for p in prefixes)


def check_policy(policy: SandboxPolicy, config: SandboxConfig) -> None:
    """Refuse (:class:`LaunchError`) what the agent's config does not allow: extra writable
    paths outside ``allowed_rw_prefixes``, devices not listed in ``allowed_devices``, paths
    that are not absolute and normalised, and root (uid, gid or a group 0: the wire type
    refuses it already; this also guards policies built in code)."""
    if 0 in (policy.uid, policy.gid, *policy.groups):
        raise LaunchError("sandboxed commands never run as root (uid/gid 0)")
    for text in policy.rw_paths:
        if not _under(_clean_path(text, "writable path"), config.allowed_rw_prefixes):
            raise LaunchError(f"this agent does not allow writing to {text!r}")
    for text in policy.ro_paths:
        _clean_path(text, "read-only path")
    for text in policy.devices:
        _clean_path(text, "device")
        if text not in config.allowed_devices:
            raise LaunchError(f"this agent does not allow the device {text!r}")


def _user_switch(config: SandboxConfig, policy: SandboxPolicy) -> list[str]:
    """``setpriv`` to the policy's uid/gid with no capabilities (root agents only)."""
    if not config.privileged:
        return []
    if config.setpriv is None:
        raise LaunchError("setpriv (util-linux) is needed to run commands unprivileged")
    groups = ["--groups", ",".join(map(str, policy.groups))] if policy.groups else []
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
    args = policy.rlimits.prlimit_args()
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
        user = (policy.uid, frozenset((policy.gid, *policy.groups)))
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
    """Runs each command as ``bwrap <isolation> -- [prlimit] [setpriv] sh -c <command>``.

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
        self.writable = tuple(_clean_path(str(p), "writable dir") for p in writable)
        self.readonly = tuple(_clean_path(str(p), "read-only dir") for p in readonly)
        self._tail = [*_limits(config, policy), *_user_switch(config, policy), config.shell, "-c"]

    def _isolation(self) -> list[str]:
        config, policy = self.config, self.policy
        args = [*_bwrap_namespaces(policy.network), "--hostname", SANDBOX_HOSTNAME]
        args += ["--die-with-parent", *(["--new-session"] if config.new_session else [])]
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
            self.config.bwrap,
            *mounts,
            *self._isolation(),
            *env,
            *where,
            "--",
            *self._tail,
            spec.command,
        ]


class FallbackLauncher:
    """Without bubblewrap: ``[prlimit] [setpriv] sh -c <command>`` -- the unprivileged user
    and the limits, but no read-only system, no hidden data dir and no network isolation.
    Logs a warning when created."""

    def __init__(self, config: SandboxConfig, policy: SandboxPolicy) -> None:
        check_policy(policy, config)
        self._head = [*_limits(config, policy), *_user_switch(config, policy), config.shell, "-c"]
        who = f"uid {policy.uid}" if config.privileged else "the agent's own user"
        logger.warning(
            "bubblewrap is not available: commands run as %s without a sandbox "
            "(the system is writable where that user may write; network is not restricted)",
            who,
        )

    def argv(self, spec: LaunchSpec) -> list[str]:
        """``[prlimit ...] [setpriv ...] sh -c <command>``."""
        return [*self._head, spec.command]


def make_launcher(
    config: SandboxConfig,
    policy: SandboxPolicy,
    *,
    writable: Iterable[Path] = (),
    readonly: Iterable[Path] = (),
) -> BwrapLauncher | FallbackLauncher:
    """The sandbox launcher for one task stage: bubblewrap when available, else fallback."""
    if config.bwrap is None:
        return FallbackLauncher(config, policy)
    return BwrapLauncher(config, policy, writable=writable, readonly=readonly)


def hand_over(paths: Iterable[Path], policy: SandboxPolicy, config: SandboxConfig) -> None:
    """Give ``paths`` (recursively) to the sandbox uid/gid so its commands can write there.
    Does nothing for an agent that is not root.

    Walks by directory file descriptor and never follows a symlink, so a sandboxed process
    that swaps a directory for a link to ``/etc`` meanwhile cannot redirect the chown.
    """
    if not config.privileged:
        return
    for top in paths:
        os.chown(top, policy.uid, policy.gid, follow_symlinks=False)
        for _, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
            for name in (*dirs, *files):
                os.chown(name, policy.uid, policy.gid, dir_fd=dir_fd, follow_symlinks=False)


def tree_digest(root: Path) -> str:
    """SHA-256 over a directory tree: every entry's relative path, type, mode, owner and --
    for regular files -- content; symlinks by their target, never followed; FIFOs, sockets
    and devices by type only (never opened). Recorded after install and compared before
    every start, it detects installed files modified since (issue 5, "tampered install
    dir"). Compute it while no sandboxed command runs."""
    digest = hashlib.sha256()
    for parent, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted((*dirs, *files)):
            path = os.path.join(parent, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root).encode("utf-8", "surrogateescape")
            digest.update(b"%s\0%o\0%d:%d\0" % (rel, info.st_mode, info.st_uid, info.st_gid))
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode("utf-8", "surrogateescape") + b"\0")
            elif stat.S_ISREG(info.st_mode):
                digest.update(_file_digest(path) + b"\0")
    return digest.hexdigest()


def _file_digest(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b"not a regular file"
        return hashlib.file_digest(fh, "sha256").digest()
