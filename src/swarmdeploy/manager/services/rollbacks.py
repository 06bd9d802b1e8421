"""Rolling a release back (``POST /tasks/{id}/rollback``, issue 15, docs/rollouts.md).

A rollback deploys the **previous release of the same app** to every device that got the
release being rolled back, as **one new task**:

1. the task must be a deploy task, i.e. a release of an app (``services.apps``); the
   previous release is the newest release of that app created before it (a rollback task is
   a release too, so rolling back twice goes further back);
2. the devices are those whose row of the task shows that the release reached them or is on
   its way (:data:`GOT_STATES`); devices that declined it, failed its install (their previous
   release kept running), rolled back by themselves, expired, were stopped or were never
   announced are left alone;
3. the new task reuses the previous release's artifacts (``source.task``) and its install,
   run, health and sandbox settings, addressed to those devices by id; it is created through
   the ordinary task creation (validated, signed with the operator's key, announced at once);
4. an open staged rollout of the rolled-back task is aborted **before** the devices are read
   (its devices not announced yet never get it, and no group starts in between);
5. the link is stored both ways (``task_rollbacks``; ``rollbackOf`` / ``rolledBackBy`` in the
   task documents) and the action is audited (``task.rollback``).

Every refusal is a :class:`ConflictError` naming the problem; nothing has changed then,
except when the new task cannot be created after the rollout was aborted (a device deleted
meanwhile), which the message says.
:func:`rollback_document` and :func:`previous_release` are pure.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import ConflictError, InvalidInput, NotFoundError
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.rollouts import HALTED, PAUSED, RUNNING, Rollouts
from swarmdeploy.protocol.states import TargetState as S
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import RollbackRecord, TaskAppRecord, TaskRecord

log = logging.getLogger(__name__)

#: States of a device's row that mean the release reached the device or is on its way.
GOT_STATES = frozenset(
    s.value
    for s in (
        S.ANNOUNCED,
        S.ACCEPTED,
        S.TRANSFERRING,
        S.INSTALLING,
        S.INSTALLED,
        S.RUNNING,
        S.HEALTHY,
        S.EXITED,
        S.FAILED,
    )
)
#: Top-level descriptor fields of the previous release that the rollback task does not take:
#: it reuses the artifacts instead of building, is announced at once, and gets the default
#: delivery window.
_DROPPED = ("build", "rollout", "expiresIn", "source")


class TaskCreator(Protocol):
    """Creates a task from a descriptor (``TaskService.create``)."""

    async def create(
        self, document: object, *, created_by: str, principal: Principal | None = None
    ) -> Any:
        """Validate, store, sign and announce; returns the task's view (with ``record``)."""


def previous_release(
    releases: Sequence[TaskAppRecord], current: TaskAppRecord
) -> TaskAppRecord | None:
    """The newest release of ``current.app`` created before ``current`` (``releases``: the
    app's releases, any order), or ``None``."""
    earlier = [
        r
        for r in releases
        if r.task_id != current.task_id
        and r.app == current.app
        and (r.created_at, r.task_id) < (current.created_at, current.task_id)
    ]
    return max(earlier, key=lambda r: (r.created_at, r.task_id), default=None)


def rollback_document(
    task: TaskRecord,
    previous: TaskRecord,
    previous_app: TaskAppRecord,
    devices: Sequence[str],
) -> dict[str, Any]:
    """The descriptor of the rollback task: ``previous``'s deploy settings and artifacts,
    addressed to ``devices`` by id."""
    doc = {k: copy.deepcopy(v) for k, v in previous.descriptor.items() if k not in _DROPPED}
    has_artifacts = previous.build_host is not None or previous.source_digest is not None
    source = previous.descriptor.get("source")
    if has_artifacts or (isinstance(source, dict) and source.get("task")):
        doc["source"] = {"task": previous.id}
    deploy = dict(doc.get("deploy") or {})
    deploy["target"] = {"ids": list(devices)}
    doc["deploy"] = deploy
    doc["app"] = previous_app.app
    label = f" {previous_app.version}" if previous_app.version else ""
    doc["description"] = (
        f"rollback of task {task.id} to task {previous.id} ({previous_app.app}{label})"
    )
    return doc


class Rollbacks:
    """Rollback of releases (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        creator: TaskCreator,
        rollouts: Rollouts,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._storage = storage
        self._creator = creator
        self._rollouts = rollouts
        self._audit = audit
        self._clock = clock

    async def rollback(self, task_id: str, by: Principal) -> str:
        """Roll ``task_id`` back; returns the id of the new task. :class:`NotFoundError`
        for an unknown task, :class:`ConflictError` naming why nothing can be rolled back."""
        task = await self._storage.get_task(task_id)
        if task is None:
            raise NotFoundError(f"task {task_id} is not found")
        current = await self._storage.get_task_app(task_id)
        if current is None or not isinstance(task.descriptor.get("deploy"), dict):
            raise ConflictError(
                f"task {task_id} is not a release of an app (it deploys nothing): "
                "there is nothing to roll back"
            )
        if current.remove:
            raise ConflictError(f"task {task_id} removes app {current.app}; it has no release")
        devices = await self._devices(task_id)
        if not devices:
            raise ConflictError(
                f"no device got the release of task {task_id} (none is "
                f"{', '.join(sorted(GOT_STATES))}): there is nothing to roll back"
            )
        releases = await self._storage.list_task_apps(app=current.app)
        before = previous_release(releases, current)
        previous = None if before is None else await self._storage.get_task(before.task_id)
        if before is None or previous is None:
            raise ConflictError(
                f"app {current.app} has no release before task {task_id}: "
                "there is no previous release to roll back to"
            )
        # the rollout stops first, so that no group starts between reading the devices and
        # announcing the rollback; the devices are read again after it
        aborted = await self._abort_rollout(task_id, by)
        devices = await self._devices(task_id)
        doc = rollback_document(task, previous, before, devices)
        try:
            view = await self._creator.create(doc, created_by=by.audit_name, principal=by)
        except InvalidInput as exc:
            note = " (its rollout is aborted)" if aborted else ""
            raise ConflictError(
                f"cannot roll task {task_id}{note} back to task {previous.id}: {exc.message}"
            ) from None
        new_id: str = view.record.id
        await self._storage.add_rollback(RollbackRecord(new_id, task_id, self._clock()))
        await self._audit.append(
            by, "task.rollback", task_id, {"task": new_id, "to": previous.id,
                                           "targets": len(devices)},
        )  # fmt: skip
        log.info("task %s rolled back to task %s by %s on %d device(s) as task %s",
                 task_id, previous.id, by.audit_name, len(devices), new_id)  # fmt: skip
        return new_id

    async def _devices(self, task_id: str) -> list[str]:
        """The devices that got the task's release (:data:`GOT_STATES`), sorted."""
        rows = await self._storage.task_targets(task_id)
        return sorted(r.target_id for r in rows if r.role == "deploy" and r.state in GOT_STATES)

    async def _abort_rollout(self, task_id: str, by: Principal) -> bool:
        """Abort the rolled-back task's staged rollout if it is still open; whether it
        was."""
        record = await self._storage.get_rollout(task_id)
        if record is None or record.state not in (RUNNING, PAUSED, HALTED):
            return False
        try:
            await self._rollouts.abort(task_id, by)
        except (ConflictError, NotFoundError) as exc:  # ended or deleted meanwhile
            log.info("rollout of task %s not aborted: %s", task_id, exc)
            return False
        return True
