"""The package runner (parallel, supervised run commands) and sequential command stages.

* :class:`Runner` supervises the run commands of one deployment in parallel (seed 003 §3.2.2
  "Package Runner"). Every command of a runner carries the same marker
  ``SWARMDEPLOY_RUN_ID=<run_id>`` in its environment; the daemon persists ``run_id`` *before*
  :meth:`Runner.start` so that leftovers of a crashed agent are found and killed on the next
  start (see :func:`swarmdeploy.agent.state.resume_plan`).
* :func:`run_sequence` runs install or build commands one after the other and stops at the
  first failure (seed 003 "Package Installer"/"Package Builder"), each under a timeout that
  kills its whole process group. Cancelling it kills the running command's group too.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarmdeploy.agent.errors import LaunchError, LifecycleError
from swarmdeploy.agent.output import DEFAULT_MAX_LINE_BYTES, LineSink
from swarmdeploy.agent.process import (
    RUN_ID_VAR,
    Child,
    Launcher,
    LaunchSpec,
    ShellLauncher,
    terminate_group,
    terminate_marked,
)
from swarmdeploy.agent.supervise import (
    EventSink,
    ProcessState,
    SupervisedProcess,
    SupervisionConfig,
)


def new_run_id() -> str:
    """A fresh random run marker (24 hex characters)."""
    return os.urandom(12).hex()


class RunnerState(enum.StrEnum):
    """Lifecycle of a :class:`Runner` (one-shot: it cannot be started twice)."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """How one run command ended."""

    command: str
    state: ProcessState
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class RunResult:
    """The end of a runner: one outcome per command, in command order."""

    outcomes: tuple[CommandOutcome, ...]

    @property
    def stopped(self) -> bool:
        """Whether an operator stop ended (some of) the commands."""
        return any(o.state is ProcessState.STOPPED for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """Whether every command ended by itself with exit status 0."""
        return all(o.state is ProcessState.EXITED and o.exit_code == 0 for o in self.outcomes)


class Runner:
    """Supervises the run commands of one deployment, in parallel.

    ``env`` is the complete environment (see :func:`~swarmdeploy.agent.process.child_env`);
    the runner adds its marker. ``on_line`` and ``on_event`` run on the event loop and must
    not block.
    """

    def __init__(
        self,
        commands: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        config: SupervisionConfig,
        on_line: LineSink,
        on_event: EventSink,
        run_id: str | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        self.run_id = run_id or new_run_id()
        self._config = config
        self._state = RunnerState.IDLE
        env = {**env, RUN_ID_VAR: self.run_id}
        self._procs = [
            SupervisedProcess(
                LaunchSpec(command, cwd, env),
                config=config,
                on_line=on_line,
                on_event=on_event,
                launcher=launcher,
                index=index,
            )
            for index, command in enumerate(commands)
        ]
        self._ended: asyncio.Task[RunResult] | None = None

    @property
    def state(self) -> RunnerState:
        """The runner's lifecycle state."""
        return self._state

    @property
    def process_groups(self) -> list[int]:
        """Process group ids of the commands that currently have a live group."""
        return [p.pgid for p in self._procs if p.pgid is not None]

    def states(self) -> list[ProcessState]:
        """The current state of each command, in command order."""
        return [p.state for p in self._procs]

    def start(self) -> None:
        """Start every command (only once)."""
        if self._state is not RunnerState.IDLE:
            raise LifecycleError(f"runner {self.run_id} cannot start in state {self._state}")
        self._state = RunnerState.RUNNING
        for proc in self._procs:
            proc.start()
        self._ended = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> RunResult:
        """Stop every command (group TERM, grace, KILL) and sweep marked leftovers."""
        if self._ended is None:
            raise LifecycleError(f"runner {self.run_id} was never started")
        if self._state is RunnerState.RUNNING:
            self._state = RunnerState.STOPPING
            await asyncio.gather(*(p.stop() for p in self._procs))
        return await asyncio.shield(self._ended)

    async def wait(self) -> RunResult:
        """Wait until every command has settled (ended, given up or stopped)."""
        if self._ended is None:
            raise LifecycleError(f"runner {self.run_id} was never started")
        return await asyncio.shield(self._ended)

    async def _collect(self) -> RunResult:
        await asyncio.gather(*(p.wait() for p in self._procs))
        # Processes that left their group (setsid) but kept the marker end with the run.
        await terminate_marked(self.run_id, self._config.grace_s)
        self._state = RunnerState.ENDED
        return RunResult(
            tuple(CommandOutcome(p.spec.command, p.state, p.exit_code) for p in self._procs)
        )


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How one sequential command ended. ``exit_code`` is None if it never started."""

    command: str
    exit_code: int | None
    timed_out: bool
    duration_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Exit status 0 within the time limit."""
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True, slots=True)
class SequenceResult:
    """Results of the commands that ran (the last one failed unless ``ok``)."""

    results: tuple[CommandResult, ...]

    @property
    def ok(self) -> bool:
        """Every command ran and succeeded."""
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> CommandResult | None:
        """The command that failed, if any."""
        return next((r for r in self.results if not r.ok), None)


@dataclass(frozen=True, slots=True)
class SequenceConfig:
    """Limits of sequential commands."""

    timeout_s: float | None = 3600.0
    grace_s: float = 5.0
    drain_timeout_s: float = 1.0
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES


async def run_sequence(
    commands: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: LineSink,
    config: SequenceConfig,
    launcher: Launcher | None = None,
    on_result: Callable[[CommandResult], None] | None = None,
    run_id: str | None = None,
) -> SequenceResult:
    """Run ``commands`` one after the other in ``cwd``; stop at the first failure.

    All commands carry the marker ``run_id`` (fresh if None); whatever a command leaves
    behind, even outside its group, is killed when it ends. Persist ``run_id`` before calling
    so that leftovers of an agent crash can be killed at the next start. ``on_result`` is told
    about each finished command.
    """
    run_id = run_id or new_run_id()
    results: list[CommandResult] = []
    for command in commands:
        result = await run_command(
            command,
            cwd=cwd,
            env=env,
            on_line=on_line,
            config=config,
            launcher=launcher,
            run_id=run_id,
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
        if not result.ok:
            break
    return SequenceResult(tuple(results))


async def run_command(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: LineSink,
    config: SequenceConfig,
    launcher: Launcher | None = None,
    run_id: str | None = None,
) -> CommandResult:
    """Run one command to its end (or timeout); nothing it started survives the return.

    ``run_id`` is the marker put in its environment (fresh if None). Never pass the marker
    of a running deployment: its processes would be killed with the command's leftovers.
    """
    marker = run_id or new_run_id()
    spec = LaunchSpec(command, cwd, {**env, RUN_ID_VAR: marker})
    started = time.monotonic()
    try:
        child = Child.spawn(spec, launcher or ShellLauncher(), on_line, config.max_line_bytes)
    except LaunchError as exc:
        return CommandResult(command, None, False, 0.0, str(exc))
    timed_out = False
    try:
        async with asyncio.timeout(config.timeout_s):
            await child.wait()
    except TimeoutError:
        timed_out = True
    finally:
        cleanup = asyncio.get_running_loop().create_task(_end_child(child, marker, config))
        await asyncio.shield(cleanup)
    return CommandResult(command, child.returncode, timed_out, time.monotonic() - started, None)


async def _end_child(child: Child, marker: str, config: SequenceConfig) -> None:
    await terminate_group(child.pgid, config.grace_s)
    await terminate_marked(marker, config.grace_s)
    await child.wait()
    await child.drain(config.drain_timeout_s)
