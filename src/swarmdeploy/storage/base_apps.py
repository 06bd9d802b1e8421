"""Apps of tasks.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_apps.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swarmdeploy.storage.records import (
    TaskAppRecord,
    TaskTargetRecord,
)


class AppStore(abc.ABC):
    """Apps of deploy tasks and the rows a standing release adds later (``services.apps``)."""

    @abc.abstractmethod
    async def add_task_targets(self, task_id: str, targets: Sequence[TaskTargetRecord]) -> int:
        """Add per-target rows to a stored task (a standing release reaching a device that
        matches later); rows of targets the task has already are skipped. Returns how many
        were added. Raises :class:`NotFound` for an unknown task."""

    @abc.abstractmethod
    async def add_task_app(self, record: TaskAppRecord) -> None:
        """Store the app of a task (the row goes with its task). Raises :class:`NotFound`
        for an unknown task and :class:`Conflict` when the task has one already."""

    @abc.abstractmethod
    async def get_task_app(self, task_id: str) -> TaskAppRecord | None:
        """The app of the task, or ``None``."""

    @abc.abstractmethod
    async def list_task_apps(
        self, *, app: str | None = None, standing: bool | None = None
    ) -> list[TaskAppRecord]:
        """App rows of existing tasks, newest first (``created_at``, then task id, both
        descending); only of ``app`` and/or only standing (or not) ones when given."""
