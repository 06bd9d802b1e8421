"""Build artifacts and build times of the in-memory storage (no awaits: every call is atomic
with respect to other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from swarmdeploy.storage.common import check_page
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import ArtifactRecord, BuildRecord, Page, TaskRecord


class ArtifactStore:
    """Artifact records keyed by ``(task_id, sha256)`` and build times keyed by task."""

    def __init__(self) -> None:
        self.artifacts: dict[tuple[str, str], ArtifactRecord] = {}
        self.builds: dict[str, BuildRecord] = {}

    def delete_task(self, task_id: str) -> None:
        """Delete every record of the task."""
        for key in [k for k in self.artifacts if k[0] == task_id]:
            del self.artifacts[key]
        self.builds.pop(task_id, None)


def _sort_key(record: ArtifactRecord) -> tuple[int, str, str]:
    return (record.built_at, record.task_id, record.sha256)


class MemoryArtifacts:
    """The artifact methods of ``MemoryStorage`` (a mixin: the storage owns the tasks)."""

    _state: StorageState
    _tasks: dict[str, TaskRecord]
    _artifacts: ArtifactStore

    async def add_artifacts(self, artifacts: Sequence[ArtifactRecord]) -> int:
        """Store new records, skip known ones; ``NotFound`` (nothing stored) for a task."""
        require_open(self._state)
        for record in artifacts:
            if record.task_id not in self._tasks:
                raise NotFound(f"task {record.task_id!r} not found")
        stored = 0
        for record in artifacts:
            key = (record.task_id, record.sha256)
            if key not in self._artifacts.artifacts:
                self._artifacts.artifacts[key] = dataclasses.replace(
                    record, commands=tuple(record.commands)
                )
                stored += 1
        return stored

    async def list_artifacts(
        self,
        *,
        task_id: str | None = None,
        sha256: str | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page[ArtifactRecord]:
        """Records by ``(built_at, task_id, sha256)``, filtered by task and digest."""
        require_open(self._state)
        offset = check_page(page, per_page)
        found = sorted(
            (
                r
                for r in self._artifacts.artifacts.values()
                if task_id in (None, r.task_id) and sha256 in (None, r.sha256)
            ),
            key=_sort_key,
        )
        return Page(
            total=len(found), items=found[offset : offset + per_page], page=page, per_page=per_page
        )

    async def note_build(
        self,
        task_id: str,
        *,
        host: str,
        started_at: int | None = None,
        finished_at: int | None = None,
    ) -> None:
        """Keep the first start and finish time of the task's build; ``NotFound``."""
        require_open(self._state)
        if task_id not in self._tasks:
            raise NotFound(f"task {task_id!r} not found")
        old = self._artifacts.builds.get(task_id) or BuildRecord(task_id=task_id, host=host)
        self._artifacts.builds[task_id] = dataclasses.replace(
            old,
            host=host,
            started_at=old.started_at if old.started_at is not None else started_at,
            finished_at=old.finished_at if old.finished_at is not None else finished_at,
        )

    async def get_build(self, task_id: str) -> BuildRecord | None:
        """The build times of the task, or ``None``."""
        require_open(self._state)
        return self._artifacts.builds.get(task_id)
