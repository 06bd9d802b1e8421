"""Rollouts and rollbacks.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_rollouts.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swarmdeploy.storage.records import (
    RollbackRecord,
    RolloutRecord,
)


class RolloutStore(abc.ABC):
    """Staged rollouts of tasks and the links of rollbacks (docs/rollouts.md)."""

    @abc.abstractmethod
    async def add_rollout(self, record: RolloutRecord) -> None:
        """Store the staged rollout of a task (the row goes with its task). Raises
        :class:`NotFound` for an unknown task and :class:`Conflict` when it has one."""

    @abc.abstractmethod
    async def get_rollout(self, task_id: str) -> RolloutRecord | None:
        """The rollout of the task, or ``None``."""

    @abc.abstractmethod
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
        """Set where the rollout stands (its groups never change); the updated record, or
        ``None`` when the task has no rollout."""

    @abc.abstractmethod
    async def list_rollouts(self, states: Sequence[str]) -> list[RolloutRecord]:
        """Rollouts of existing tasks in one of ``states``, by task id."""

    @abc.abstractmethod
    async def add_rollback(self, record: RollbackRecord) -> None:
        """Store that ``record.task_id`` rolls back ``record.rollback_of`` (the row goes with
        the rollback task). Raises :class:`NotFound` for an unknown rollback task and
        :class:`Conflict` when it has a link already."""

    @abc.abstractmethod
    async def rollback_links(self, task_id: str) -> list[RollbackRecord]:
        """The links of a task both ways: the one naming it as the rollback task and those
        that roll it back, oldest first (``created_at``, then task id)."""
