"""Staged rollouts of the in-memory storage (no awaits: every call is atomic with respect
to other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import RollbackRecord, RolloutRecord, TaskRecord


class MemoryRollouts:
    """The rollout methods of ``MemoryStorage`` (a mixin). Rollouts of deleted tasks are
    left out of every answer (the SQL backends delete them with the task)."""

    _state: StorageState
    _tasks: dict[str, TaskRecord]
    _rollouts: dict[str, RolloutRecord]
    _rollbacks: dict[str, RollbackRecord]

    async def add_rollout(self, record: RolloutRecord) -> None:
        """Store it; ``NotFound`` for an unknown task, ``Conflict`` for a second one."""
        require_open(self._state)
        if record.task_id not in self._tasks:
            raise NotFound(f"task {record.task_id!r} not found")
        if record.task_id in self._rollouts:
            raise Conflict(f"task {record.task_id!r} has a rollout already")
        self._rollouts[record.task_id] = record

    async def get_rollout(self, task_id: str) -> RolloutRecord | None:
        """The rollout of the task or ``None``."""
        require_open(self._state)
        if task_id not in self._tasks:
            self._rollouts.pop(task_id, None)
            return None
        return self._rollouts.get(task_id)

    async def update_rollout(
        self,
        task_id: str,
        *,
        state: str,
        current: int,
        reason: str,
        soak_until: int | None,
        updated_at: int,
    ) -> RolloutRecord | None:
        """Set where the rollout stands; ``None`` when there is none."""
        record = await self.get_rollout(task_id)
        if record is None:
            return None
        record = dataclasses.replace(
            record,
            state=state,
            current=current,
            reason=reason,
            soak_until=soak_until,
            updated_at=updated_at,
        )
        self._rollouts[task_id] = record
        return record

    async def list_rollouts(self, states: Sequence[str]) -> list[RolloutRecord]:
        """Rollouts of existing tasks in one of ``states``, by task id."""
        require_open(self._state)
        wanted = set(states)
        return sorted(
            (r for r in self._rollouts.values() if r.task_id in self._tasks and r.state in wanted),
            key=lambda r: r.task_id,
        )

    async def add_rollback(self, record: RollbackRecord) -> None:
        """Store the link; ``NotFound`` for an unknown rollback task, ``Conflict`` for a
        second one."""
        require_open(self._state)
        if record.task_id not in self._tasks:
            raise NotFound(f"task {record.task_id!r} not found")
        if record.task_id in self._rollbacks:
            raise Conflict(f"task {record.task_id!r} is a rollback already")
        self._rollbacks[record.task_id] = record

    async def rollback_links(self, task_id: str) -> list[RollbackRecord]:
        """Links of existing rollback tasks naming the task either way, oldest first."""
        require_open(self._state)
        return sorted(
            (
                r
                for r in self._rollbacks.values()
                if r.task_id in self._tasks and task_id in (r.task_id, r.rollback_of)
            ),
            key=lambda r: (r.created_at, r.task_id),
        )
