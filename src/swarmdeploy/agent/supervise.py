"""Supervision of one long-running command, in the style of supervisor's process states.

State table (``_ALLOWED``), applied only by :meth:`SupervisedProcess._change_state`, which
validates, logs one INFO line and publishes a :class:`ProcessEvent`::

    STOPPED/EXITED/FATAL -> STARTING -> RUNNING -> EXITED            (ended, no restart)
                                 |          |----> BACKOFF -> STARTING (crashed, autoRestart)
                                 |          |----> FATAL             (too many quick crashes)
                                 |          '----> STOPPING -> STOPPED (operator stop)
                                 '--> BACKOFF | FATAL | STOPPING       (could not start)

A crash is a non-zero exit (or death by signal); exit status 0 ends in EXITED even with
``auto_restart``. Without ``auto_restart`` every end of the command is EXITED (the exit code
tells how it went) and only a launch failure is FATAL. When the leader exits, what is left of
its process group is stopped too (TERM, grace, KILL), as systemd does for a service's control
group: run commands must stay in the foreground. Backoff doubles from ``backoff_base_s`` to
``backoff_max_s``; a run that lasted ``stable_after_s`` resets the count;
``max_quick_failures`` consecutive failures end in FATAL. An operator stop never leads to a
restart. See docs/adr/0003-process-supervision.md.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from swarmdeploy.agent.errors import LaunchError, LifecycleError
from swarmdeploy.agent.output import DEFAULT_MAX_LINE_BYTES, LineSink, now_ms
from swarmdeploy.agent.process import Child, Launcher, LaunchSpec, ShellLauncher, terminate_group

logger = logging.getLogger(__name__)


class ProcessState(enum.StrEnum):
    """Where a supervised command stands."""

    STOPPED = "stopped"  # not started, or stopped by an operator
    STARTING = "starting"  # being launched
    RUNNING = "running"
    BACKOFF = "backoff"  # crashed or failed to start; restart pending
    STOPPING = "stopping"  # operator stop in progress (TERM sent, KILL after grace)
    EXITED = "exited"  # ended on its own, not restarted
    FATAL = "fatal"  # could not be started, or crashed too often: given up


S = ProcessState
_ALLOWED: dict[ProcessState, frozenset[ProcessState]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.EXITED: frozenset({S.STARTING}),
    S.FATAL: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.FATAL, S.STOPPING, S.STOPPED}),
    S.RUNNING: frozenset({S.EXITED, S.BACKOFF, S.FATAL, S.STOPPING}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
}


class _Outcome(enum.Enum):
    SUCCEEDED = "exit status 0"
    CRASHED = "non-zero exit or killed by a signal"
    NOT_STARTED = "could not be launched"
    STOPPED = "stopped by the operator"


#: States in which the supervising task has finished.
SETTLED_STATES = frozenset({S.STOPPED, S.EXITED, S.FATAL})


@dataclass(frozen=True, slots=True)
class ProcessEvent:
    """A state change of one supervised command (published on every transition)."""

    index: int
    command: str
    old: ProcessState
    new: ProcessState
    time_ms: int
    pid: int | None
    exit_code: int | None
    message: str


EventSink = Callable[[ProcessEvent], None]


@dataclass(frozen=True, slots=True)
class SupervisionConfig:
    """How commands are supervised; seconds everywhere."""

    auto_restart: bool = False
    grace_s: float = 5.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_quick_failures: int = 5
    stable_after_s: float = 10.0
    drain_timeout_s: float = 1.0
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def backoff_s(self, failures: int) -> float:
        """Delay before restart number ``failures`` (1-based): base * 2**(n-1), capped."""
        return float(min(self.backoff_base_s * 2 ** max(failures - 1, 0), self.backoff_max_s))


class SupervisedProcess:
    """One command under supervision. Use :meth:`start`, :meth:`stop`, :meth:`wait`."""

    def __init__(
        self,
        spec: LaunchSpec,
        *,
        config: SupervisionConfig,
        on_line: LineSink,
        on_event: EventSink,
        launcher: Launcher | None = None,
        index: int = 0,
    ) -> None:
        self.spec = spec
        self.index = index
        self._config = config
        self._on_line = on_line
        self._on_event = on_event
        self._launcher = launcher or ShellLauncher()
        self._state = ProcessState.STOPPED
        self._task: asyncio.Task[None] | None = None
        self._child: Child | None = None
        self._killer: asyncio.Task[bool] | None = None
        self._stop_requested = False
        self._wake = asyncio.Event()
        self.exit_code: int | None = None
        self.starts = 0

    @property
    def state(self) -> ProcessState:
        """The current state."""
        return self._state

    @property
    def pgid(self) -> int | None:
        """Process group of the current run, if one is alive or being stopped."""
        return self._child.pgid if self._child is not None else None

    def start(self) -> None:
        """Launch the command (from STOPPED, EXITED or FATAL); supervision runs in a task."""
        if self._state not in SETTLED_STATES:
            raise LifecycleError(f"cannot start {self.spec.command!r} in state {self._state}")
        self._stop_requested = False
        self._wake.clear()
        self.exit_code = None
        self._change_state(S.STARTING)
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        """Operator stop: kill the whole group (TERM, grace, KILL); never restarts after it.

        Returns when the state is settled. Harmless on a command that already ended.
        """
        if self._task is None or self._task.done():
            return
        self._stop_requested = True
        self._wake.set()
        if self._child is not None and self._state in (S.STARTING, S.RUNNING):
            self._change_state(S.STOPPING)
            self._kill(self._child)
        await asyncio.shield(self._task)

    async def wait(self) -> ProcessState:
        """Wait until supervision ends (EXITED, FATAL or STOPPED) and return that state."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self._state

    async def _supervise(self) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            outcome = await self._run_once()
            if outcome is _Outcome.STOPPED:
                self._change_state(S.STOPPED)
                return
            if outcome is _Outcome.SUCCEEDED:
                self._change_state(S.EXITED)
                return
            if not self._config.auto_restart:
                # A run that ended badly is EXITED (the exit code tells); one that never
                # started is FATAL.
                self._change_state(S.EXITED if outcome is _Outcome.CRASHED else S.FATAL)
                return
            if time.monotonic() - started >= self._config.stable_after_s:
                failures = 0
            failures += 1
            if failures >= self._config.max_quick_failures:
                self._change_state(S.FATAL, message=f"gave up after {failures} quick failures")
                return
            delay = self._config.backoff_s(failures)
            self._change_state(S.BACKOFF, message=f"restart in {delay:.1f}s")
            if await self._sleep_unless_stopped(delay):
                self._change_state(S.STOPPED)
                return
            self._change_state(S.STARTING)

    async def _run_once(self) -> _Outcome:
        """Launch once and wait until the whole group is gone."""
        self.exit_code = None
        try:
            child = Child.spawn(
                self.spec, self._launcher, self._on_line, self._config.max_line_bytes
            )
        except LaunchError as exc:
            logger.warning("%s", exc)
            return _Outcome.STOPPED if self._stop_requested else _Outcome.NOT_STARTED
        self._child, self._killer = child, None
        self.starts += 1
        try:
            if self._stop_requested:
                self._change_state(S.STOPPING)
                self._kill(child)
            else:
                self._change_state(S.RUNNING, pid=child.pid)
            await child.wait()
        finally:
            # Leader gone, or this task is cancelled: either way the rest of the group ends
            # too, the leader is reaped and the pipes are drained before we go on.
            await asyncio.shield(self._end(child))
            self._child = None
        self.exit_code = child.returncode
        if self._stop_requested:
            return _Outcome.STOPPED
        return _Outcome.SUCCEEDED if self.exit_code == 0 else _Outcome.CRASHED

    async def _end(self, child: Child) -> None:
        await self._kill(child)
        await child.wait()
        await child.drain(self._config.drain_timeout_s)

    def _kill(self, child: Child) -> asyncio.Task[bool]:
        """Start (once per run) the group termination of ``child``; return its task."""
        if self._killer is None:
            coro = terminate_group(child.pgid, self._config.grace_s)
            self._killer = asyncio.get_running_loop().create_task(coro)
        return self._killer

    async def _sleep_unless_stopped(self, delay_s: float) -> bool:
        """Sleep ``delay_s``; return True early if a stop was requested."""
        try:
            async with asyncio.timeout(delay_s):
                await self._wake.wait()
        except TimeoutError:
            pass
        return self._stop_requested

    def _change_state(
        self, new: ProcessState, *, pid: int | None = None, message: str = ""
    ) -> None:
        """The one choke point for state changes: validate, log one line, publish."""
        old = self._state
        if new not in _ALLOWED.get(old, frozenset()):
            raise LifecycleError(f"illegal process transition {old} -> {new}")
        self._state = new
        code = self.exit_code if new in (S.EXITED, S.FATAL, S.BACKOFF, S.STOPPED) else None
        detail = f" (exit {code})" if code is not None else ""
        detail += f" {message}" if message else ""
        logger.info("command %d %r: %s -> %s%s", self.index, self.spec.command, old, new, detail)
        event = ProcessEvent(self.index, self.spec.command, old, new, now_ms(), pid, code, message)
        try:
            self._on_event(event)
        except Exception:  # a faulty subscriber must not break supervision
            logger.exception("event subscriber failed on %s", event)
