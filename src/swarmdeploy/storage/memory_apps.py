"""Apps and standing releases of the in-memory storage (no awaits: every call is atomic with
respect to other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import TaskAppRecord, TaskRecord, TaskTargetRecord


class MemoryApps:
    """The app methods of ``MemoryStorage`` (a mixin). App rows of deleted tasks are left
    out of every answer (the SQL backends delete them with the task)."""

    _state: StorageState
    _tasks: dict[str, TaskRecord]
    _task_targets: dict[tuple[str, str], TaskTargetRecord]
    _task_apps: dict[str, TaskAppRecord]

    async def add_task_targets(self, task_id: str, targets: Sequence[TaskTargetRecord]) -> int:
        """Add the rows of targets the task has not yet; ``NotFound`` for a task."""
        require_open(self._state)
        if task_id not in self._tasks:
            raise NotFound(f"task {task_id!r} not found")
        added = 0
        for row in targets:
            key = (task_id, row.target_id)
            if key not in self._task_targets:
                self._task_targets[key] = TaskTargetRecord(
                    task_id, row.target_id, row.state, row.updated_at, row.role, row.reason
                )
                added += 1
        return added

    async def add_task_app(self, record: TaskAppRecord) -> None:
        """Store it; ``NotFound`` for an unknown task, ``Conflict`` for a second row."""
        require_open(self._state)
        if record.task_id not in self._tasks:
            raise NotFound(f"task {record.task_id!r} not found")
        current = self._task_apps.get(record.task_id)
        if current is not None:
            raise Conflict(f"task {record.task_id!r} has an app already")
        self._task_apps[record.task_id] = record

    async def get_task_app(self, task_id: str) -> TaskAppRecord | None:
        """The app row of the task or ``None``."""
        require_open(self._state)
        return self._task_apps.get(task_id) if task_id in self._tasks else None

    async def list_task_apps(
        self, *, app: str | None = None, standing: bool | None = None
    ) -> list[TaskAppRecord]:
        """App rows, newest first, optionally of one app and/or standing or not."""
        require_open(self._state)
        rows = [
            r
            for r in self._task_apps.values()
            if r.task_id in self._tasks
            and (app is None or r.app == app)
            and (standing is None or r.standing == standing)
        ]
        return sorted(rows, key=lambda r: (r.created_at, r.task_id), reverse=True)
