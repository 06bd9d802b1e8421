"""An app's current deployment: run commands started, watched, stopped, restarted exactly once.

:class:`DeploymentSupervisor` owns the one :class:`~swarmdeploy.agent.runner.Runner` of the
installed release of one app (seed 003 "Package Runner"; :mod:`.apps` holds one per app) and
keeps
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

**Health-gated releases** (``deploy.health``, docs/protocol.md §4.3): the replaced release is
kept as ``Deployment.previous`` (not reported stopped) while
:mod:`~swarmdeploy.agent.healthgate` runs the checks, whose phase is persisted in
``Deployment.health`` (an agent restart resumes them). Passed: ``healthy``, then the
previous release is reported stopped and its folder deleted. Failed: the new release is
stopped, reported ``rolled_back`` (``failed`` without a previous release) and the previous
one started again through the same checks as every start.

**Before every start** (activation, agent restart, every ``autoRestart`` restart) the
deployment is checked (:meth:`DeploymentSupervisor.check`): the stored signed manifest is
verified again (:meth:`~swarmdeploy.agent.trust.Verifier.verify_installed` -- signer,
revocation, target, sequence), the recorded run commands must be the signed ones, and the
install dir must have the tree digest recorded after install (the activation right after
the install takes the digest its seal just computed instead of hashing the tree again). A
refused deployment starts nothing: it is recorded as stopped (nothing restarts it) and
reported ``failed`` with the check's code in the reason. A new deployment is checked
*before* the current one is stopped, so a refused one leaves the previous deployment
running. Run commands execute through the sandbox launcher of the manifest's policy
(:mod:`swarmdeploy.agent.confine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from swarmdeploy.agent.confine import Confinement, TaskDirs, check_tree
from swarmdeploy.agent.context import AgentContext, in_thread
from swarmdeploy.agent.errors import LaunchError, TaskError, TaskRefused
from swarmdeploy.agent.fsutil import remove_tree
from swarmdeploy.agent.healthgate import DeviceProbes, run_checks
from swarmdeploy.agent.manifests import load_task
from swarmdeploy.agent.output import now_ms
from swarmdeploy.agent.process import Launcher, LaunchSpec
from swarmdeploy.agent.runner import Runner, new_run_id
from swarmdeploy.agent.state import Deployment, HealthPhase
from swarmdeploy.agent.supervise import ProcessEvent, ProcessState
from swarmdeploy.agent.trust import Verifier
from swarmdeploy.protocol.descriptor_common import DEFAULT_APP
from swarmdeploy.protocol.manifest import HealthCheck, TaskManifest
from swarmdeploy.protocol.states import FINAL_STATES, TargetState

logger = logging.getLogger(__name__)
STAGE = "run"
S = TargetState


class DeploymentSupervisor:
    """Runs the current deployment (see the module docstring)."""

    def __init__(
        self,
        ctx: AgentContext,
        verifier: Verifier,
        confinement: Confinement,
        app: str = DEFAULT_APP,
    ) -> None:
        self._ctx = ctx
        self._app = app
        self._verifier = verifier
        self._confine = confinement
        self._runner: Runner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._groups: dict[int, int] = {}
        self._reasons: dict[int, str] = {}
        self._shutting_down = False
        self._background: set[asyncio.Task[None]] = set()
        self._checks: asyncio.Task[None] | None = None
        self._down: str | None = None  # why a run command went down during the checks
        self._up_since = 0.0

    @property
    def runner(self) -> Runner | None:
        """The runner of the current run, if one was started by this agent process."""
        return self._runner

    async def resume(self, start_commands: tuple[int, ...]) -> None:
        """Agent start: run the commands of the persisted deployment that had not ended."""
        dep = self._ctx.state.deployment_of(self._app)
        if dep is None or dep.stopped:
            return
        if start_commands:
            self._ctx.collector.marker(dep.task_id, STAGE, "agent restarted")
            manifest = await self._start(dep, start_commands)
            if manifest is not None and manifest.health is not None and dep.health is not None:
                self._ctx.collector.marker(dep.task_id, STAGE, "resuming the health checks")
                self._begin_checks(dep, manifest, manifest.health)
        elif dep.health is not None:
            await self._roll_back(dep, "the run commands ended before the health checks passed")
        else:
            await self._finish(dep)

    async def activate(
        self,
        task_id: str,
        manifest: TaskManifest,
        *,
        sequence: int,
        digest: str,
        sealed_now: bool = False,
    ) -> bool:
        """Replace the current deployment by the freshly installed ``task_id`` (``sequence``
        of its signed manifest, ``digest`` of its sealed install dir). Checked first: if
        refused, the new task is reported ``failed`` and the current deployment keeps
        running (False). ``sealed_now``: this process sealed the tree and computed
        ``digest`` just before, with no command run since, so the tree is not hashed again
        (every other start hashes it, :meth:`check`)."""
        dirs = TaskDirs(self._ctx.task_dir(task_id))
        dep = Deployment(
            task_id=task_id,
            install_dir=str(dirs.app),
            debug=manifest.debug,
            run_commands=list(manifest.run),
            auto_restart=manifest.auto_restart,
            sequence=sequence,
            tree_digest=digest,
            admitted_tags=list(self._ctx.state.tags),
        )
        try:
            checked = await in_thread(lambda: self.check(dep, tree_checked=sealed_now))
        except TaskRefused as exc:
            self._ctx.collector.marker(task_id, STAGE, str(exc), error=True)
            await self._ctx.reporter.report_path(task_id, TargetState.FAILED, str(exc))
            return False
        gated = checked.health is not None and bool(dep.run_commands)
        previous = self._restorable() if gated else None
        # A release kept for a rollback is reported stopped only once the new one is healthy.
        await self.stop(None, f"replaced by task {task_id}", keep=previous)
        if gated:
            dep.health = HealthPhase(started_ms=now_ms())
            dep.previous = previous
        self._ctx.state.set_deployment(self._app, dep)
        self._reasons = {}
        if not dep.run_commands:
            self._ctx.save()
            await self._ctx.reporter.report(task_id, TargetState.EXITED, "no run commands")
            return True
        started = await self._start(dep, tuple(range(len(dep.run_commands))), checked)
        if started is not None and checked.health is not None and dep.health is not None:
            self._begin_checks(dep, checked, checked.health)
        return True

    def _restorable(self) -> Deployment | None:
        """The release a health-gated new release falls back to: the current one if it
        still runs (a fresh copy: nothing of its run is reused), or -- if the current one is
        itself still being checked -- the one that one would fall back to."""
        prior = self._ctx.state.deployment_of(self._app)
        if prior is None or prior.stopped:
            return None
        if prior.health is not None:
            return prior.previous
        if self._ctx.reporter.current(prior.task_id) in FINAL_STATES:
            return None
        return msgspec.structs.replace(
            prior, run_id=None, process_groups=[], finished=[], failed=[], stopped=False
        )

    def check(self, dep: Deployment, *, tree_checked: bool = False) -> TaskManifest:
        """The checks before a start (module docstring; blocking). Returns the verified
        manifest; raises :class:`TaskRefused` naming the failed check. ``tree_checked``: the
        caller has just computed the install dir's digest itself (:meth:`activate` right after
        the seal), so it is not hashed a second time."""
        dirs = TaskDirs(self._ctx.task_dir(dep.task_id))
        message = load_task(dirs.root)
        if message is None:
            raise TaskRefused("tampered_install", "the stored signed manifest is missing")
        manifest = self._verifier.verify_installed(dep, message)
        if manifest.run != dep.run_commands or manifest.auto_restart != dep.auto_restart:
            raise TaskRefused("tampered_install", "the recorded run commands are not the signed")
        if not tree_checked:
            check_tree(dirs, dep.tree_digest)
        return manifest

    def signer_revoked(self) -> str | None:
        """The current deployment's task id if it is not stopped and the key that signed it
        is revoked by the accepted revocation list, else None (blocking: reads the stored
        manifest). Issue 9: a running deployment of a revoked key is marked (and, with
        ``--on-revoked stop``, stopped) at once instead of only at its next start."""
        dep = self._ctx.state.deployment_of(self._app)
        if dep is None or dep.stopped or dep.sequence == 0:
            return None
        message = load_task(TaskDirs(self._ctx.task_dir(dep.task_id)).root)
        if message is None:
            return None
        try:
            self._verifier.verify_installed(dep, message)
        except TaskRefused as exc:
            return dep.task_id if exc.code == "revoked_signer" else None
        return None

    async def _start(
        self, dep: Deployment, indexes: tuple[int, ...], manifest: TaskManifest | None = None
    ) -> TaskManifest | None:
        """Check (unless ``manifest`` was just checked) and start ``indexes``; the verified
        manifest, or None if refused."""
        dirs = TaskDirs(self._ctx.task_dir(dep.task_id))
        try:
            if manifest is None:
                manifest = await in_thread(lambda: self.check(dep))
            policy = manifest.sandbox
            inner = await in_thread(lambda: self._confine.run_stage(dirs, policy))
        except TaskError as exc:
            await self._refuse(dep, str(exc))
            return None
        dep.run_id = new_run_id()
        dep.process_groups = []
        self._ctx.save()  # docs/adr/0003 step 3: the marker is on disk before any process
        launcher = GuardedLauncher(inner, lambda: self.check(dep), self._refused_at_restart(dep))
        runner = Runner(
            [dep.run_commands[i] for i in indexes],
            cwd=dirs.app,
            env=self._confine.env(dirs),
            config=self._ctx.supervision(auto_restart=dep.auto_restart),
            on_line=self._ctx.collector.sink(dep.task_id, STAGE, debug=dep.debug),
            on_event=lambda event: self._on_event(dep, indexes, event),
            run_id=dep.run_id,
            launcher=launcher,
        )
        self._runner, self._groups = runner, {}
        self._down, self._up_since = None, time.time()
        text = f"starting {len(indexes)} run command(s)"
        self._ctx.collector.marker(dep.task_id, STAGE, text)
        runner.start()
        if self._ctx.reporter.current(dep.task_id) not in (S.RUNNING, S.HEALTHY):
            await self._ctx.reporter.report(dep.task_id, TargetState.RUNNING)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(dep, runner))
        return manifest

    # --- deploy.health (docs/protocol.md §4.3) -------------------------------------------

    def _begin_checks(self, dep: Deployment, manifest: TaskManifest, spec: HealthCheck) -> None:
        self._checks = asyncio.get_running_loop().create_task(
            self._check_health(dep, manifest, spec)
        )

    async def _check_health(
        self, dep: Deployment, manifest: TaskManifest, spec: HealthCheck
    ) -> None:
        """Run the checks of ``dep`` to their verdict, then keep or roll back the release."""
        assert dep.health is not None
        dirs = TaskDirs(self._ctx.task_dir(dep.task_id))
        probes = DeviceProbes(
            cwd=dirs.app,
            env=self._confine.env(dirs),
            launcher=lambda: self._confine.run_stage(dirs, manifest.sandbox),
            config=self._ctx.sequence(),
            down=lambda: self._down,
        )
        verdict = await run_checks(
            spec, dep.health, probes, clock=time.time, up_since=self._up_since,
            on_attempt=self._ctx.save,
        )  # fmt: skip
        if dep.stopped or self._ctx.state.deployment_of(self._app) is not dep:
            return
        self._checks = None  # the verdict's follow-up must not cancel this very task
        if verdict.healthy:
            await self._healthy(dep)
        else:
            await self._roll_back(dep, verdict.reason)

    async def _healthy(self, dep: Deployment) -> None:
        """The checks passed: report ``healthy``, then let the previous release go (it is
        reported stopped now, and its folder deleted)."""
        previous, dep.health, dep.previous = dep.previous, None, None
        self._ctx.save()
        self._ctx.collector.marker(dep.task_id, STAGE, "health checks passed")
        await self._ctx.reporter.report(dep.task_id, S.HEALTHY)
        if previous is not None:
            await self._let_go(previous, f"replaced by task {dep.task_id}")
        if self._down is not None:  # went down right after the verdict: the end is reported
            await self._finish(dep)

    async def _let_go(self, previous: Deployment, reason: str) -> None:
        if self._ctx.reporter.current(previous.task_id) not in FINAL_STATES:
            await self._ctx.reporter.report(previous.task_id, S.STOPPED, reason)
        await in_thread(lambda: remove_tree(self._ctx.task_dir(previous.task_id)))

    async def _roll_back(self, dep: Deployment, reason: str) -> None:
        """The checks failed: stop the new release and start the previous one again
        (verified like every start), reporting ``rolled_back``; without a previous release
        the new one is reported ``failed``."""
        previous = dep.previous
        logger.warning("task %s: health checks failed: %s", dep.task_id, reason)
        if self._runner is not None:
            # Interrupted here (agent shutdown), the phase is still persisted: the next
            # start finds the commands ended (or restarts them) and rolls back then.
            await self._runner.stop()
            self._runner = None
        dep.process_groups, dep.stopped, dep.health, dep.previous = [], True, None, None
        self._ctx.collector.marker(
            dep.task_id, STAGE, f"health checks failed: {reason}", error=True
        )
        if previous is None:
            self._ctx.save()
            why = f"{reason}; no previous release to roll back to"
            await self._ctx.reporter.report_path(dep.task_id, S.FAILED, why)
            return
        self._ctx.state.set_deployment(self._app, previous)
        self._reasons = {}
        why = f"{reason}; rolled back to task {previous.task_id}"
        await self._ctx.reporter.report(dep.task_id, S.ROLLED_BACK, why)  # persists the switch
        text = f"restored: task {dep.task_id} failed its health checks"
        self._ctx.collector.marker(previous.task_id, STAGE, text)
        await self._start(previous, tuple(range(len(previous.run_commands))))

    async def _end_checks(self) -> None:
        checks, self._checks = self._checks, None
        if checks is not None and not checks.done():
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks

    def _refused_at_restart(self, dep: Deployment) -> Callable[[TaskRefused], None]:
        def refused(exc: TaskRefused) -> None:
            self._spawn(self._refuse(dep, str(exc)))

        return refused

    async def _refuse(self, dep: Deployment, reason: str) -> None:
        """Start nothing (more) of ``dep``: stop what runs, record it as stopped and failed
        (no restart, not even after an agent restart) and report ``failed``."""
        logger.error("task %s: not starting the deployment: %s", dep.task_id, reason)
        dep.stopped = True
        dep.finished = list(range(len(dep.run_commands)))
        dep.failed = list(dep.finished)
        self._ctx.save()
        if self._runner is not None and self._ctx.state.deployment_of(self._app) is dep:
            await self._runner.stop()
            self._runner = None
        dep.process_groups = []
        self._ctx.save()
        self._ctx.collector.marker(dep.task_id, STAGE, reason, error=True)
        if self._ctx.reporter.current(dep.task_id) not in FINAL_STATES:
            await self._ctx.reporter.report_path(dep.task_id, TargetState.FAILED, reason)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
            self._down = text
            dep.finished = sorted({*dep.finished, index})
            if bad:
                dep.failed = sorted({*dep.failed, index})
                self._reasons[index] = text
            self._ctx.save()
            self._ctx.collector.marker(dep.task_id, STAGE, text, error=bad)
        elif event.new is ProcessState.BACKOFF:
            text = f"command {event.command!r} crashed ({_code(event)}); {event.message}"
            self._down = text
            self._ctx.collector.marker(dep.task_id, STAGE, text, error=True)

    async def _watch(self, dep: Deployment, runner: Runner) -> None:
        await runner.wait()
        if (
            self._shutting_down
            or dep.stopped
            or self._ctx.state.deployment_of(self._app) is not dep
            or dep.health is not None  # the health checks decide (they see it down)
        ):
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

    async def stop(
        self,
        task_id: str | None,
        reason: str,
        *,
        report: bool = True,
        keep: Deployment | None = None,
    ) -> bool:
        """Stop the current deployment (if it is ``task_id``, or whatever it is for None):
        process groups TERM then KILL; nothing restarts afterwards. ``report``: report the
        task ``stopped`` (unless it had ended already). ``keep``: a release kept for a
        rollback (not reported). True if there was one to stop."""
        dep = self._ctx.state.deployment_of(self._app)
        if dep is None or (task_id is not None and dep.task_id != task_id):
            return False
        was_final = self._ctx.reporter.current(dep.task_id) in FINAL_STATES
        await self._end_checks()
        previous, dep.health, dep.previous = dep.previous, None, None
        if not dep.stopped:
            dep.stopped = True
            self._ctx.save()
        if previous is not None and (keep is None or keep.task_id != previous.task_id):
            await self._let_go(previous, reason)  # held for a rollback that cannot happen now
        if keep is not None and keep.task_id == dep.task_id:
            report = False  # running until the new release is healthy, as far as anyone knows
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
        await self._end_checks()
        for task in list(self._background):
            await asyncio.wait({task})
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


class GuardedLauncher:
    """A run-stage launcher that repeats the start checks before every *restart* of a
    command (``autoRestart``); the first launch of each command follows the checks the
    supervisor ran just before. A refused restart raises :class:`LaunchError` (nothing
    starts) and tells ``on_refused``. The check is blocking (restarts are rare and follow a
    backoff)."""

    def __init__(
        self,
        inner: Launcher,
        check: Callable[[], object],
        on_refused: Callable[[TaskRefused], None],
    ) -> None:
        self._inner = inner
        self._check = check
        self._on_refused = on_refused
        self._launched: set[int] = set()

    def argv(self, spec: LaunchSpec) -> list[str]:
        """The inner launcher's argv, after the checks if this is a restart."""
        if id(spec) in self._launched:
            try:
                self._check()
            except TaskRefused as exc:
                self._on_refused(exc)
                raise LaunchError(str(exc)) from None
        self._launched.add(id(spec))
        return self._inner.argv(spec)

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        """The inner launcher's environment."""
        return self._inner.env(spec)
