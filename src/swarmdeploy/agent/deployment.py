"""The current deployment's run commands: started, watched, stopped, restarted exactly once.

:class:`DeploymentSupervisor` owns the one :class:`~swarmdeploy.agent.runner.Runner` of the
installed deployment (seed 003 "Package Runner") and keeps
:attr:`AgentState.deployment <swarmdeploy.agent.state.AgentState.deployment>` up to date:

* before any process exists a fresh run marker is persisted (docs/adr/0003 step 3), so
  that the next agent start can kill whatever this run leaves behind;
* process groups are recorded when commands start, and commands that ended for good
  (``exited``/``fatal``) are recorded in ``finished`` (and ``failed``), so that an agent
  restart starts only the commands that had not ended, once;
* when every command has ended the task is reported ``exited`` (all with status 0) or
  ``failed``; an operator stop records ``stopped`` (nothing restarts after it) and reports
  ``stopped``;
* an agent shutdown stops the processes but records nothing: the next start restarts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from swarmdeploy.agent.context import AgentContext
from swarmdeploy.agent.process import child_env
from swarmdeploy.agent.runner import Runner, new_run_id
from swarmdeploy.agent.state import Deployment
from swarmdeploy.agent.supervise import ProcessEvent, ProcessState
from swarmdeploy.protocol.manifest import TaskManifest
from swarmdeploy.protocol.states import FINAL_STATES, TargetState

logger = logging.getLogger(__name__)
STAGE = "run"


class DeploymentSupervisor:
    """Runs the current deployment (see the module docstring)."""

    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._runner: Runner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._groups: dict[int, int] = {}
        self._reasons: dict[int, str] = {}
        self._shutting_down = False

    @property
    def runner(self) -> Runner | None:
        """The runner of the current run, if one was started by this agent process."""
        return self._runner

    async def resume(self, start_commands: tuple[int, ...]) -> None:
        """Agent start: run the commands of the persisted deployment that had not ended."""
        dep = self._ctx.state.deployment
        if dep is None or dep.stopped:
            return
        if start_commands:
            self._ctx.collector.marker(dep.task_id, STAGE, "agent restarted")
            await self._start(dep, start_commands)
        else:
            await self._finish(dep)

    async def activate(self, task_id: str, manifest: TaskManifest, install_dir: Path) -> None:
        """Replace the current deployment by the freshly installed ``task_id``."""
        await self.stop(None, f"replaced by task {task_id}")
        dep = Deployment(
            task_id=task_id,
            install_dir=str(install_dir),
            debug=manifest.debug,
            run_commands=list(manifest.run),
            auto_restart=manifest.auto_restart,
        )
        self._ctx.state.deployment = dep
        self._reasons = {}
        if not dep.run_commands:
            self._ctx.save()
            await self._ctx.reporter.report(task_id, TargetState.EXITED, "no run commands")
            return
        await self._start(dep, tuple(range(len(dep.run_commands))))

    async def _start(self, dep: Deployment, indexes: tuple[int, ...]) -> None:
        dep.run_id = new_run_id()
        dep.process_groups = []
        self._ctx.save()  # docs/adr/0003 step 3: the marker is on disk before any process
        runner = Runner(
            [dep.run_commands[i] for i in indexes],
            cwd=Path(dep.install_dir),
            env=child_env(),
            config=self._ctx.supervision(auto_restart=dep.auto_restart),
            on_line=self._ctx.collector.sink(dep.task_id, STAGE, debug=dep.debug),
            on_event=lambda event: self._on_event(dep, indexes, event),
            run_id=dep.run_id,
        )
        self._runner, self._groups = runner, {}
        text = f"starting {len(indexes)} run command(s)"
        self._ctx.collector.marker(dep.task_id, STAGE, text)
        runner.start()
        if self._ctx.reporter.current(dep.task_id) is not TargetState.RUNNING:
            await self._ctx.reporter.report(dep.task_id, TargetState.RUNNING)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(dep, runner))

    def _on_event(self, dep: Deployment, indexes: tuple[int, ...], event: ProcessEvent) -> None:
        if self._shutting_down:
            return  # an agent shutdown is not an end: the next start restarts them
        index = indexes[event.index]
        if event.new is ProcessState.RUNNING and event.pid is not None:
            self._groups[index] = event.pid  # own session: the leader's pid is the group
            dep.process_groups = sorted(set(self._groups.values()))
            self._ctx.save()
        elif event.new in (ProcessState.EXITED, ProcessState.FATAL):
            bad = event.new is ProcessState.FATAL or event.exit_code != 0
            text = _ending(event)
            dep.finished = sorted({*dep.finished, index})
            if bad:
                dep.failed = sorted({*dep.failed, index})
                self._reasons[index] = text
            self._ctx.save()
            self._ctx.collector.marker(dep.task_id, STAGE, text, error=bad)
        elif event.new is ProcessState.BACKOFF:
            text = f"command {event.command!r} crashed ({_code(event)}); {event.message}"
            self._ctx.collector.marker(dep.task_id, STAGE, text, error=True)

    async def _watch(self, dep: Deployment, runner: Runner) -> None:
        await runner.wait()
        if self._shutting_down or dep.stopped or self._ctx.state.deployment is not dep:
            return
        await self._finish(dep)

    async def _finish(self, dep: Deployment) -> None:
        """Report ``exited``/``failed`` once every run command has ended."""
        if set(range(len(dep.run_commands))) - set(dep.finished):
            return
        if self._ctx.reporter.current(dep.task_id) in FINAL_STATES:
            return
        if dep.failed:
            reasons = [
                self._reasons.get(i, f"command {dep.run_commands[i]!r} failed") for i in dep.failed
            ]
            await self._ctx.reporter.report(dep.task_id, TargetState.FAILED, "; ".join(reasons))
        else:
            await self._ctx.reporter.report(dep.task_id, TargetState.EXITED)

    async def stop(self, task_id: str | None, reason: str, *, report: bool = True) -> bool:
        """Stop the current deployment (if it is ``task_id``, or whatever it is for None):
        process groups TERM then KILL; nothing restarts afterwards. ``report``: report the
        task ``stopped`` (unless it had ended already). True if there was one to stop."""
        dep = self._ctx.state.deployment
        if dep is None or (task_id is not None and dep.task_id != task_id):
            return False
        was_final = self._ctx.reporter.current(dep.task_id) in FINAL_STATES
        if not dep.stopped:
            dep.stopped = True
            self._ctx.save()
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        await self._end_watcher()
        if report and not was_final:
            self._ctx.collector.marker(dep.task_id, STAGE, f"stopped: {reason}")
            await self._ctx.reporter.report(dep.task_id, TargetState.STOPPED, reason)
        return True

    async def shutdown(self) -> None:
        """Agent shutdown: stop every process without recording an end (restart next time)."""
        self._shutting_down = True
        if self._runner is not None:
            await self._runner.stop()
        await self._end_watcher()

    async def _end_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def _code(event: ProcessEvent) -> str:
    if event.exit_code is None:
        return "no exit status"
    if event.exit_code < 0:
        return f"killed by signal {-event.exit_code}"
    return f"exit status {event.exit_code}"


def _ending(event: ProcessEvent) -> str:
    if event.new is ProcessState.FATAL:
        detail = event.message or "could not be started"
        return f"command {event.command!r} gave up: {detail}"
    return f"command {event.command!r} ended with {_code(event)}"
