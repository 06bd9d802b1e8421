"""Start-up hardening (seed 000: "hardens its execution environment", "checks for the
required binaries ... in case they are unavailable, the execution of the client is terminated").

Called once by the agent's entry point before anything else:

* :func:`harden_process`: umask 077 (keys, state and logs readable by the agent only), no core
  dumps (they would contain key material): ``RLIMIT_CORE`` 0 and ``PR_SET_DUMPABLE`` 0, which
  also stops other processes of the same user from attaching a debugger to the agent;
* :func:`check_binaries`: ``/bin/sh`` and whatever else the agent needs;
* :func:`check_data_dir`: the data dir must belong to the agent's user and must not be
  world-writable, nor sit below a world-writable directory without the sticky bit (anyone
  could rename it away and put their own in its place).

Two memory helpers for a long-lived agent on a small device (glibc only; elsewhere they do
nothing and say so): :func:`limit_malloc_arenas` keeps every thread on one malloc arena
(the ZeroMQ I/O thread and the worker threads would otherwise each keep an arena of freed
memory resident), and :func:`release_free_memory` hands freed heap pages back to the system
after transient work (``malloc_trim``). See docs/performance.md.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmdeploy.agent.errors import HardeningError

logger = logging.getLogger(__name__)

_PR_SET_DUMPABLE = 4
_M_ARENA_MAX = -8  # glibc <malloc.h>


@dataclass(frozen=True, slots=True)
class HardeningReport:
    """What :func:`harden_process` achieved."""

    previous_umask: int
    core_dumps_disabled: bool
    dumpable_cleared: bool


def harden_process() -> HardeningReport:
    """Apply the process-wide hardening; report what could not be applied (logged)."""
    previous = os.umask(0o077)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        no_core = True
    except (ValueError, OSError) as exc:
        logger.warning("cannot disable core dumps: %s", exc)
        no_core = False
    cleared = _clear_dumpable()
    if not cleared:
        logger.warning("cannot clear the dumpable flag (prctl unavailable)")
    return HardeningReport(previous, no_core, cleared)


def _clear_dumpable() -> bool:
    prctl = _libc_function("prctl")
    return prctl is not None and int(prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (``mallopt(M_ARENA_MAX)``) for the threads
    created from now on; False where that is not possible (not glibc).

    Call it before starting threads. The agent's threads (ZeroMQ I/O, the worker threads of
    transfers and unpacking) allocate little and seldom at the same time, so sharing one
    arena costs no measurable time but keeps about 1 MB less resident after a deployment.
    """
    mallopt = _libc_function("mallopt")
    return mallopt is not None and int(mallopt(_M_ARENA_MAX, arenas)) == 1


def release_free_memory() -> bool:
    """Give free heap memory back to the system (``malloc_trim(0)``); False where that is
    not possible (not glibc). Cheap (well under a millisecond on the agent's heap): call it
    after transient work such as a deployment, not in a tight loop."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _libc_function(name: str) -> Any:
    """A function of the C library the process runs on, or None if it has none by that name."""
    import ctypes  # only here: the agent needs ctypes for nothing else

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


def check_binaries(names: Iterable[str] = (), *, path: str | None = None) -> dict[str, str]:
    """Check that ``/bin/sh`` and every name in ``names`` can be executed.

    Absolute names are checked as given, others looked up in ``path`` (default ``PATH``).
    Returns name -> executable path; raises :class:`HardeningError` listing every missing one.
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in dict.fromkeys(["/bin/sh", *names]):
        if os.path.isabs(name):
            located = name if os.path.isfile(name) and os.access(name, os.X_OK) else None
        else:
            located = which(name, path)
        if located is None:
            missing.append(name)
        else:
            found[name] = located
    if missing:
        raise HardeningError(f"required programs not found or not executable: {', '.join(missing)}")
    return found


def which(name: str, path: str | None = None) -> str | None:
    """The executable ``name`` found in ``path`` (default ``PATH``), like ``shutil.which``
    (which the agent avoids: it imports the compression modules)."""
    search = os.environ.get("PATH", os.defpath) if path is None else path
    for directory in search.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_data_dir(data_dir: Path, *, create: bool = True) -> Path:
    """Make sure ``data_dir`` is safe to keep keys and state in; return its resolved path.

    A missing directory is created with mode 0700 when ``create`` is set. Raises
    :class:`HardeningError` if it is not a directory, is owned by another user, is
    world-writable, or lies below a world-writable directory without the sticky bit.
    """
    try:
        if not data_dir.exists() and create:
            data_dir.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise HardeningError(f"cannot create the data dir {data_dir}: {exc.strerror}") from exc
    try:
        info = os.stat(data_dir)
    except OSError as exc:
        raise HardeningError(f"data dir {data_dir} is not usable: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise HardeningError(f"data dir {data_dir} is not a directory")
    if info.st_uid != os.geteuid():
        raise HardeningError(
            f"data dir {data_dir} belongs to uid {info.st_uid}, the agent runs as uid"
            f" {os.geteuid()}"
        )
    if info.st_mode & stat.S_IWOTH:
        raise HardeningError(
            f"data dir {data_dir} is world-writable (mode {stat.S_IMODE(info.st_mode):o});"
            " run: chmod 700 " + str(data_dir)
        )
    resolved = data_dir.resolve()
    for parent in resolved.parents:
        mode = os.stat(parent).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise HardeningError(
                f"data dir {data_dir} lies below {parent}, which is world-writable without"
                " the sticky bit: another user could replace the data dir"
            )
    return resolved
