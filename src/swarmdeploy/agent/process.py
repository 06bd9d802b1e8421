"""Launching one command and killing what it started: the agent's process seam.

Every command runs as ``argv = launcher.argv(spec)`` (default ``/bin/sh -c <command>``) in a
new session, hence its own process group whose id is the leader's pid. The :class:`Launcher`
protocol is the one seam through which the sandbox (bubblewrap) later wraps the argv.

Why not :func:`asyncio.create_subprocess_exec`: on Python 3.11 its ``wait()`` only returns
once every pipe is closed, so a background grandchild holding stdout would hide the leader's
exit. Here the leader's exit is watched with a pidfd (polling as a fallback on old kernels) and
the pipes are drained by event-loop readers, independently.

Stopping is by group: SIGTERM (and SIGCONT, to wake stopped members) to the whole group, wait
up to a grace period until no live member remains, then SIGKILL to the group (docs/adr/0003).
The leader's descendants count as members even if they left the group. A sandbox keeper
(bubblewrap's outer process, see :func:`namespace_keepers`) is spared the SIGTERM so that the
commands inside get it and can end gracefully. Processes that left the group (``setsid``
daemons) are found by an environment marker (:data:`RUN_ID_VAR`) that every child inherits,
see :func:`terminate_marked`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from swarmdeploy.agent.errors import LaunchError
from swarmdeploy.agent.output import LineSink, LineSplitter, Stream

logger = logging.getLogger(__name__)

#: Environment variable carrying a per-run marker; used to find escaped leftovers.
RUN_ID_VAR = "SWARMDEPLOY_RUN_ID"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The only variables of the agent's own environment that commands inherit.
INHERITED_VARS = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR")
_POLL_S = 0.02
_READ_CHUNK = 64 * 1024


def child_env(
    extra: Mapping[str, str] | None = None, *, inherit: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Build the explicit environment of a command.

    Only :data:`INHERITED_VARS` are taken from ``inherit`` (default: the agent's environment);
    secrets (``SWARMDEPLOY_*``) and ``NOTIFY_SOCKET`` never leak to deployed code. ``PATH``
    and ``LANG`` get defaults; ``PYTHONUNBUFFERED=1`` makes Python output arrive line by line.
    ``extra`` is applied last.
    """
    source = os.environ if inherit is None else inherit
    env = {name: source[name] for name in INHERITED_VARS if name in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to run, where, with which (complete) environment."""

    command: str
    cwd: Path
    env: Mapping[str, str]


class Launcher(Protocol):
    """Turns a spec into the argv and environment actually executed (the sandbox seam)."""

    def argv(self, spec: LaunchSpec) -> list[str]:
        """Return the program and arguments that run ``spec.command``."""
        ...

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        """Return the complete environment of the program (usually ``spec.env`` plus what
        the launcher itself needs)."""
        ...


#: Put before a command by a wrapper shell that must not die before what it started: on
#: SIGTERM it waits for its children (which got the SIGTERM too and run their own handlers),
#: then dies of SIGTERM as it would have. A command that sets its own TERM trap or ``exec``s
#: replaces it (docs/reliability.md, "Stop semantics").
TERM_PRELUDE = "trap 'trap - TERM; wait; kill -TERM $$' TERM\n"


@dataclass(frozen=True, slots=True)
class ShellLauncher:
    """The default launcher: ``<shell> -c <command>``."""

    shell: str = "/bin/sh"

    def argv(self, spec: LaunchSpec) -> list[str]:
        """Return ``[shell, "-c", command]``."""
        return [self.shell, "-c", spec.command]

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        """``spec.env`` unchanged."""
        return dict(spec.env)


class Child:
    """One started command: leader process, its process group and its two output pipes.

    Create with :meth:`spawn` inside a running event loop. :meth:`wait` returns when the
    leader has exited (and reaps it); :meth:`drain` when both pipes reached end of file.
    """

    def __init__(self, popen: subprocess.Popen[bytes], command: str, sink: LineSink, cap: int):
        self._popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session: the leader's pid is the group id
        self._loop = asyncio.get_running_loop()
        self._eof: list[asyncio.Future[None]] = []
        for pipe, stream in ((popen.stdout, Stream.STDOUT), (popen.stderr, Stream.STDERR)):
            assert pipe is not None
            self._eof.append(self._watch_pipe(pipe, LineSplitter(command, stream, sink, cap)))
        self._exit: asyncio.Task[int] = self._loop.create_task(self._wait_exit())

    @classmethod
    def spawn(
        cls, spec: LaunchSpec, launcher: Launcher, sink: LineSink, max_line_bytes: int
    ) -> Child:
        """Start ``spec`` in its own session; raise :class:`LaunchError` if it cannot start."""
        argv = launcher.argv(spec)
        try:
            popen = subprocess.Popen(
                argv,
                cwd=spec.cwd,
                env=launcher.env(spec),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {spec.command!r}: {exc.strerror or exc}") from exc
        return cls(popen, spec.command, sink, max_line_bytes)

    @property
    def returncode(self) -> int | None:
        """Exit code of the leader once reaped (negative: killed by that signal)."""
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait for the leader to exit; other group members may still be alive."""
        return await asyncio.shield(self._exit)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until both pipes are closed; after ``timeout_s`` close our ends (False)."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(asyncio.gather(*self._eof))
            return True
        except TimeoutError:
            for pipe in (self._popen.stdout, self._popen.stderr):
                assert pipe is not None
                if not pipe.closed:
                    self._loop.remove_reader(pipe.fileno())
                    pipe.close()
            return False

    def _watch_pipe(self, pipe: IO[bytes], splitter: LineSplitter) -> asyncio.Future[None]:
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        done: asyncio.Future[None] = self._loop.create_future()

        def on_readable() -> None:
            try:
                data = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                splitter.feed(data)
                return
            self._loop.remove_reader(fd)
            pipe.close()
            splitter.close()
            if not done.done():
                done.set_result(None)

        self._loop.add_reader(fd, on_readable)
        return done

    async def _wait_exit(self) -> int:
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:  # kernel < 5.3: poll instead
            return await self._poll_exit()
        exited: asyncio.Future[None] = self._loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        self._loop.add_reader(pidfd, on_exit)
        try:
            await exited
        finally:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._popen.wait()  # already exited: reaps without blocking

    async def _poll_exit(self) -> int:
        code = self._popen.poll()
        while code is None:  # no pidfd: nothing to wait on
            await asyncio.sleep(_POLL_S * 5)
            code = self._popen.poll()
        return code


@dataclass(frozen=True, slots=True)
class _Proc:
    """One row of the process table (``/proc/<pid>/stat``)."""

    pid: int
    ppid: int
    pgrp: int
    live: bool  # neither a zombie nor dead


def _proc_table() -> list[_Proc]:
    """Every process visible in ``/proc``."""
    table = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        live = fields[0].decode() not in "ZX"
        table.append(_Proc(int(name), int(fields[1]), int(fields[2]), live))
    return table


def group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group ``pgid``."""
    return [p.pid for p in _group_procs(pgid) if p.pgrp == pgid]


def _group_procs(pgid: int) -> list[_Proc]:
    """Live processes of group ``pgid`` plus the live descendants of its leader (the process
    ``pgid`` while it exists in that group) that left the group, e.g. a sandboxed command
    started with ``setsid``: everything of one run."""
    try:
        os.killpg(pgid, 0)  # cheap test first: no such group at all
    except ProcessLookupError:
        return []
    except PermissionError:
        pass  # members exist but belong to someone else; list them anyway
    table = _proc_table()
    found = {p.pid: p for p in table if p.pgrp == pgid and p.live}
    if any(p.pid == pgid and p.pgrp == pgid for p in table):
        found.update((p.pid, p) for p in _descendants(table, pgid) if p.live)
    return list(found.values())


def _descendants(table: list[_Proc], pid: int) -> list[_Proc]:
    children: dict[int, list[_Proc]] = {}
    for proc in table:
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def _marked_procs(run_id: str) -> list[_Proc]:
    needle = f"{RUN_ID_VAR}={run_id}".encode()
    found = []
    for proc in _proc_table():
        if not proc.live or proc.pid == os.getpid():
            continue
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found.append(proc)
    return found


def marked_processes(run_id: str) -> list[int]:
    """Pids of live processes whose environment carries ``RUN_ID_VAR=run_id``."""
    return [p.pid for p in _marked_procs(run_id)]


def _ns_pids(pid: int) -> list[str]:
    """The pid of ``pid`` in each PID namespace it belongs to, outermost first (the
    ``NSpid`` line of ``/proc/<pid>/status``; empty if unreadable or kernel < 4.1)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"NSpid:"):
                    return line.decode().split()[1:]
    except OSError:
        pass
    return []


def namespace_keepers(procs: Iterable[tuple[int, int]]) -> set[int]:
    """Of ``procs`` given as (pid, parent pid), the pids whose child is the init (pid 1) of
    a deeper PID namespace -- bubblewrap's outer process (``--unshare-pid``).

    Such a keeper must not get SIGTERM: it does not handle it and dies, and
    ``--die-with-parent`` then SIGKILLs its namespace before the commands inside could
    finish their TERM handlers. It exits by itself once everything inside has exited. (The
    init inside needs no care: from an ancestor namespace it only receives signals it has a
    handler for, and SIGKILL.)
    """
    pairs = list(procs)
    pids = {pid for pid, _ in pairs}
    keepers = set()
    for pid, ppid in pairs:
        if ppid in pids and ppid not in keepers:
            inner, outer = _ns_pids(pid), _ns_pids(ppid)
            if outer and len(inner) > len(outer) and inner[-1] == "1":
                keepers.add(ppid)
    return keepers


def _send(procs: Iterable[_Proc], sig: int) -> None:
    """Signal each process; one that is gone or not ours is skipped (the wait reports what
    survives)."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, sig)


class _Target(Protocol):
    """The processes one termination is about."""

    def procs(self) -> list[_Proc]:
        """The live processes now."""
        ...

    def term(self) -> None:
        """Send SIGTERM (and SIGCONT) once."""
        ...

    def kill(self) -> None:
        """Send SIGKILL."""
        ...


@dataclass(frozen=True, slots=True)
class _Group:
    """A process group plus its leader's descendants (see :func:`_group_procs`)."""

    pgid: int

    def procs(self) -> list[_Proc]:
        return _group_procs(self.pgid)

    def term(self) -> None:
        procs = self.procs()
        keepers = namespace_keepers((p.pid, p.ppid) for p in procs)
        if keepers:  # by pid: the group holds a sandbox keeper (see namespace_keepers)
            _send([p for p in procs if p.pid not in keepers], signal.SIGTERM)
        else:  # one atomic group signal, by pid only for those that left the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)
            _send([p for p in procs if p.pgrp != self.pgid], signal.SIGTERM)
        _send(procs, signal.SIGCONT)

    def kill(self) -> None:
        procs = self.procs()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        _send(procs, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class _Marked:
    """Every live process carrying one run marker."""

    run_id: str

    def procs(self) -> list[_Proc]:
        return _marked_procs(self.run_id)

    def term(self) -> None:
        procs = self.procs()
        keepers = namespace_keepers((p.pid, p.ppid) for p in procs)
        _send([p for p in procs if p.pid not in keepers], signal.SIGTERM)
        _send(procs, signal.SIGCONT)

    def kill(self) -> None:
        _send(self.procs(), signal.SIGKILL)


async def terminate_group(pgid: int, grace_s: float, *, kill_wait_s: float = 5.0) -> bool:
    """Stop every process of group ``pgid`` and every descendant of its leader: SIGTERM,
    then SIGKILL after ``grace_s``.

    SIGTERM goes to the group at once (``killpg``) -- unless a sandbox keeper is among them
    (:func:`namespace_keepers`): then to every process but the keeper, one by one, so that
    the commands inside bubblewrap run their TERM handlers; the keeper exits after them.
    SIGKILL goes to all, keepers included. Returns True once none is alive; False if some
    survived SIGKILL for ``kill_wait_s`` (e.g. stuck in uninterruptible sleep), logged.
    """
    return await _terminate(_Group(pgid), grace_s, kill_wait_s)


async def terminate_marked(run_id: str, grace_s: float, *, kill_wait_s: float = 5.0) -> bool:
    """Stop every live process carrying the marker ``run_id``, wherever its group is.

    This catches processes that left their process group (``setsid``) but kept the
    environment. Same TERM/KILL escalation, keeper rule and return value as
    :func:`terminate_group`.
    """
    return await _terminate(_Marked(run_id), grace_s, kill_wait_s)


async def _terminate(target: _Target, grace_s: float, kill_wait_s: float) -> bool:
    if not target.procs():
        return True
    target.term()
    if await _wait_gone(target, grace_s):
        return True
    target.kill()
    if await _wait_gone(target, kill_wait_s):
        return True
    logger.error("processes %s survived SIGKILL", [p.pid for p in target.procs()])
    return False


async def _wait_gone(target: _Target, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while target.procs():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True
