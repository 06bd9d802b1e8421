"""The build stage of a task on the manager (seed 003 CRD-103/104/105, "Package Builder";
docs/build.md).

:class:`BuildRecorder` is what the agent link calls when the build host reports:

* ``building``: the start time is stored (:meth:`BuildRecorder.started`);
* ``built``: **before** the state is persisted, every verified upload of the task becomes an
  :class:`~swarmdeploy.storage.records.ArtifactRecord` with its provenance (task, host,
  time, commands) -- so a manager that dies between the two steps records them again when
  the agent repeats its report, and a task never shows ``built`` without its artifacts;
* ``build_failed`` / ``declined``: the finish time is stored and every deploy target still
  waiting for the build ends ``stopped`` with the reason ("build failed: ..."): a failed
  build deploys nothing (:meth:`BuildRecorder.ended`). The link calls this before it
  acknowledges the report, so a lost acknowledgement repeats it (idempotent).

:func:`build_stage` builds the ``build`` block of the task document from the stored rows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import FINAL_STATES, TargetEvent, TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import (
    ArtifactRecord,
    BuildRecord,
    TaskRecord,
    TaskTargetRecord,
    UploadRecord,
)

log = logging.getLogger(__name__)

_WAITING = (TargetState.PENDING.value, TargetState.ANNOUNCED.value)
#: Build host states after which the deploy targets will never get the build's artifacts.
BUILD_ENDED_BADLY = frozenset({TargetState.BUILD_FAILED, TargetState.DECLINED})


def build_commands(task: TaskRecord) -> tuple[str, ...]:
    """The build commands of the stored descriptor (empty for a task without a build)."""
    build = task.descriptor.get("build")
    commands = build.get("commands") if isinstance(build, dict) else None
    return tuple(str(c) for c in commands) if isinstance(commands, list) else ()


def artifact_records(
    task: TaskRecord, host: str, uploads: Sequence[UploadRecord], built_at: int
) -> list[ArtifactRecord]:
    """The provenance records of the task's complete uploads."""
    commands = build_commands(task)
    return [
        ArtifactRecord(
            task_id=task.id,
            sha256=u.sha256,
            name=u.name,
            size_bytes=u.size_bytes,
            build_host=host,
            built_at=built_at,
            commands=commands,
        )
        for u in uploads
        if u.complete
    ]


class BuildRecorder:
    """Records build progress and its consequences (see the module docstring)."""

    def __init__(self, storage: Storage, *, states: TaskStates, clock: Clock) -> None:
        self._storage = storage
        self._states = states
        self._clock = clock

    async def started(self, task_id: str, host: str) -> None:
        """The build host reported ``building``: keep the first start time."""
        try:
            await self._storage.note_build(task_id, host=host, started_at=self._clock())
        except NotFound:
            log.debug("build start of deleted task %s ignored", task_id)

    async def delivered(self, task_id: str, host: str) -> list[ArtifactRecord]:
        """The build host is about to be ``built``: record its verified uploads as artifacts
        (idempotent) and the finish time; returns the records (empty for a deleted task)."""
        task = await self._storage.get_task(task_id)
        if task is None:
            return []
        now = self._clock()
        records = artifact_records(task, host, await self._storage.list_uploads(task_id), now)
        try:
            stored = await self._storage.add_artifacts(records)
            await self._storage.note_build(task_id, host=host, finished_at=now)
        except NotFound:
            return []
        if stored:
            log.info("task %s: %d build artifact(s) recorded from %s", task_id, stored, host)
        return records

    async def ended(self, task_id: str, host: str, state: TargetState, reason: str) -> int:
        """The build host ended in ``state`` (one of :data:`BUILD_ENDED_BADLY`): store the
        finish time and stop the deploy targets still waiting; returns how many stopped."""
        try:
            await self._storage.note_build(task_id, host=host, finished_at=self._clock())
        except NotFound:
            return 0
        what = "build failed" if state is TargetState.BUILD_FAILED else "build host declined"
        why = f"{what}: {reason}" if reason else what
        stopped = 0
        for row in await self._storage.task_targets(task_id):
            if row.role != "deploy" or row.state not in _WAITING:
                continue
            try:
                done = await self._states.apply(
                    task_id, row.target_id, TargetEvent.STOP, reason=why
                )
            except (NotFoundError, TransitionError) as exc:
                log.debug("task %s on %s not stopped: %s", task_id, row.target_id, exc)
                continue
            stopped += done is not None
        if stopped:
            log.info("task %s: %s; %d deploy target(s) stopped", task_id, what, stopped)
        return stopped


@dataclasses.dataclass(frozen=True, slots=True)
class BuildStage:
    """The build of a task as the API shows it."""

    row: TaskTargetRecord
    times: BuildRecord | None
    artifacts: list[ArtifactRecord]


def build_stage_json(task: TaskRecord, stage: BuildStage | None) -> dict[str, Any] | None:
    """The ``build`` block of a task document (``None`` for a task without a build):
    the descriptor's host, commands and artifact paths, then the stage's state, reason,
    start, finish, duration and the stored artifacts (name, digest, size)."""
    build = task.descriptor.get("build")
    if not isinstance(build, dict):
        return None
    doc: dict[str, Any] = {
        "host": build.get("host"),
        "commands": build.get("commands"),
        "artifactPaths": build.get("artifacts"),
        "state": None,
        "reason": "",
        "startedAt": None,
        "finishedAt": None,
        "durationMs": None,
        "artifacts": [],
    }
    if stage is None:
        return doc
    row, times = stage.row, stage.times
    started = times.started_at if times else None
    finished = times.finished_at if times else None
    if finished is None and TargetState(row.state) in FINAL_STATES:
        finished = row.updated_at
    doc.update(
        state=row.state,
        reason=row.reason,
        startedAt=started,
        finishedAt=finished,
        durationMs=finished - started if started is not None and finished is not None else None,
        artifacts=[
            {"name": a.name, "sha256": a.sha256, "size": a.size_bytes} for a in stage.artifacts
        ],
    )
    return doc


async def load_build_stage(
    storage: Storage, task: TaskRecord, rows: Sequence[TaskTargetRecord]
) -> BuildStage | None:
    """The build stage of ``task`` from storage (``None`` without a build host row)."""
    row = next((r for r in rows if r.role == "build"), None)
    if task.build_host is None or row is None:
        return None
    artifacts = await storage.list_artifacts(task_id=task.id, per_page=1000)
    return BuildStage(row, await storage.get_build(task.id), list(artifacts.items))
