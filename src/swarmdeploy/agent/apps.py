"""Several apps side by side (issue 14, docs/protocol.md "Apps"): one
:class:`~swarmdeploy.agent.deployment.DeploymentSupervisor` per app.

A device runs at most one release per app. A new release replaces only the release of its
own app (the supervisor of that app checks it, stops the old processes, starts the new); the
other apps keep running. An agent restart starts each app's remaining run commands once
(:func:`~swarmdeploy.agent.state.resume_plan` gives them per app after every leftover of
every app was killed). A stop names a task, so it reaches exactly one app; a stop of every
task (``task_id`` None) stops every app.
"""

from __future__ import annotations

from swarmdeploy.agent.confine import Confinement
from swarmdeploy.agent.context import AgentContext
from swarmdeploy.agent.deployment import DeploymentSupervisor
from swarmdeploy.agent.trust import Verifier
from swarmdeploy.protocol.manifest import TaskManifest


class AppSupervisors:
    """The deployment supervisors of all apps, created on first use."""

    def __init__(self, ctx: AgentContext, verifier: Verifier, confinement: Confinement) -> None:
        self._ctx = ctx
        self._verifier = verifier
        self._confine = confinement
        self._apps: dict[str, DeploymentSupervisor] = {}

    def of(self, app: str) -> DeploymentSupervisor:
        """The supervisor of ``app``."""
        sup = self._apps.get(app)
        if sup is None:
            sup = DeploymentSupervisor(self._ctx, self._verifier, self._confine, app)
            self._apps[app] = sup
        return sup

    def current_task_ids(self) -> set[str]:
        """Task ids of every app's installed release (stopped ones included)."""
        return {dep.task_id for _, dep in self._ctx.state.deployments()}

    def held_task_ids(self) -> set[str]:
        """Task ids of releases kept for a rollback while a new release of their app is
        being health-checked (``deploy.health``): their folders must stay."""
        return {dep.previous.task_id for _, dep in self._ctx.state.deployments() if dep.previous}

    async def resume(self, starts: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
        """Agent start: each app runs the commands of its release that had not ended."""
        for app, indexes in starts:
            await self.of(app).resume(indexes)

    async def activate(
        self,
        task_id: str,
        manifest: TaskManifest,
        *,
        sequence: int,
        digest: str,
        sealed_now: bool = False,
    ) -> bool:
        """Replace the release of ``manifest``'s app by ``task_id`` (other apps stay)."""
        return await self.of(manifest.app_name).activate(
            task_id, manifest, sequence=sequence, digest=digest, sealed_now=sealed_now
        )

    async def stop(self, task_id: str | None, reason: str, *, report: bool = True) -> list[str]:
        """Stop the release that is ``task_id`` (None: every app's); return the task ids of
        the releases stopped."""
        stopped = []
        for app, dep in self._ctx.state.deployments():
            if task_id is None or dep.task_id == task_id:
                if await self.of(app).stop(task_id, reason, report=report):
                    stopped.append(dep.task_id)
        return stopped

    def signers_revoked(self) -> list[str]:
        """Task ids of the running releases (any app) whose signer is revoked (blocking)."""
        found = []
        for app, _ in self._ctx.state.deployments():
            task_id = self.of(app).signer_revoked()
            if task_id is not None:
                found.append(task_id)
        return found

    async def shutdown(self) -> None:
        """Agent shutdown: stop every app's processes without recording an end."""
        for sup in list(self._apps.values()):
            await sup.shutdown()
