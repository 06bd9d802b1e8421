"""Tasks and per-target task rows.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_tasks.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swarmdeploy.storage.records import (
    Page,
    SortOrder,
    StateCount,
    TaskRecord,
    TaskTargetRecord,
)


class TaskStore(abc.ABC):
    """Tasks and their per-target rows (the one state table), and the blobs they reference."""

    @abc.abstractmethod
    async def add_task(self, task: TaskRecord, targets: Sequence[TaskTargetRecord]) -> None:
        """Store a task with its initial per-target rows. Raises :class:`Conflict`."""

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> TaskRecord | None:
        """The task, or ``None``."""

    @abc.abstractmethod
    async def list_tasks(
        self,
        *,
        search: str | None = None,
        sort_order: SortOrder = "asc",
        page: int = 1,
        per_page: int = 100,
    ) -> Page[TaskRecord]:
        """Tasks sorted by ``created_at``. ``search``: full-text over the description
        (every word must occur)."""

    @abc.abstractmethod
    async def delete_task(self, task_id: str) -> None:
        """Delete the task, its per-target rows and its logs. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def mark_task_stopped(self, task_id: str, at: int) -> None:
        """Set ``stopped_at``. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def task_targets(self, task_id: str) -> list[TaskTargetRecord]:
        """Per-target rows of a task sorted by (role, target_id); build host first."""

    @abc.abstractmethod
    async def task_state_counts(self, task_ids: Sequence[str]) -> dict[str, list[StateCount]]:
        """For each of ``task_ids`` its rows counted by (role, state), sorted by role, then
        by the first target id (tasks without rows are missing); one query for all."""

    @abc.abstractmethod
    async def target_tasks(
        self, target_id: str, *, states: Sequence[str] | None = None
    ) -> list[TaskTargetRecord]:
        """Rows of a target over all tasks (optionally only in ``states``), newest task first."""

    @abc.abstractmethod
    async def recent_task_rows(
        self, target_ids: Sequence[str], *, per_target: int
    ) -> dict[str, list[TaskTargetRecord]]:
        """For each of ``target_ids`` its rows of its ``per_target`` newest tasks, newest
        first (targets without tasks are missing from the answer); one query however many
        targets (the devices list and map show every device's recent outcomes)."""

    @abc.abstractmethod
    async def get_task_target(self, task_id: str, target_id: str) -> TaskTargetRecord | None:
        """The row of ``target_id`` for ``task_id``, or ``None``."""

    @abc.abstractmethod
    async def count_task_targets_by_state(self) -> dict[str, int]:
        """Number of per-target rows in each state (states without rows are left out)."""

    @abc.abstractmethod
    async def count_tasks_by_states(self) -> dict[frozenset[str], int]:
        """Number of tasks for each set of distinct states their rows are in; a task's
        summary status depends on that set only (``protocol.states.summarize``). Tasks
        without rows count under the empty set."""

    @abc.abstractmethod
    async def set_task_target_state(
        self,
        task_id: str,
        target_id: str,
        *,
        state: str,
        updated_at: int,
        reason: str = "",
        expected: Sequence[str] | None = None,
    ) -> bool:
        """Set the state of one row. When ``expected`` is given the update happens only if the
        current state is one of them (compare-and-set); returns whether a row changed."""

    @abc.abstractmethod
    async def retry_task_target(
        self, task_id: str, target_id: str, *, updated_at: int, expected: Sequence[str]
    ) -> TaskTargetRecord | None:
        """Put one row back to ``pending`` for another attempt: ``reason`` cleared,
        ``attempt`` one higher -- only if its state is one of ``expected`` (compare-and-set).
        Returns the updated row, or ``None`` when no row changed."""

    @abc.abstractmethod
    async def expire_pending(
        self, *, now: int, states: Sequence[str], new_state: str
    ) -> list[TaskTargetRecord]:
        """Move every row in ``states`` whose task expired at or before ``now`` to
        ``new_state``; returns the changed rows (with the new state)."""

    @abc.abstractmethod
    async def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        """Those of ``digests`` (SHA-256, lower-case hex) that stored records still need:

        * the source archive of a task (``tasks.source_digest``);
        * an upload record, complete or not (``uploads.sha256``);
        * a build artifact record (``artifacts.sha256``, the ``/artifacts`` catalogue);
        * the signed manifest of an existing task that has neither an archive nor a build
          of its own -- one that reuses another task's artifacts (``source.task``) and keeps
          needing them after that task is deleted. The digest is found anywhere in the
          manifest bytes; signatures of deleted tasks do not count. (Manifests of the other
          tasks name only their own archive and uploads, found above.)

        Read in one transaction: one statement per 300 digests over the digest columns and,
        only while some digests are still unreferenced, one over the manifests of reusing
        tasks. An empty ``digests`` reads nothing."""
