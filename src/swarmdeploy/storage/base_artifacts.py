"""Build artifacts and builds.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_artifacts.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swarmdeploy.storage.records import (
    ArtifactRecord,
    BuildRecord,
    Page,
)


class ArtifactStore(abc.ABC):
    """Build artifacts and build times (docs/build.md)."""

    @abc.abstractmethod
    async def add_artifacts(self, artifacts: Sequence[ArtifactRecord]) -> int:
        """Store artifact records in one transaction; a record whose ``(task_id, sha256)`` is
        stored already is skipped (a repeated ``built`` report records once). Returns how
        many were stored. Raises :class:`NotFound` (storing nothing) when a task is unknown.
        Deleting the task deletes its artifact records."""

    @abc.abstractmethod
    async def list_artifacts(
        self,
        *,
        task_id: str | None = None,
        sha256: str | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page[ArtifactRecord]:
        """Artifact records, oldest build first (sorted by ``built_at``, ``task_id``,
        ``sha256``), optionally only those of one task and/or with one digest."""

    @abc.abstractmethod
    async def note_build(
        self,
        task_id: str,
        *,
        host: str,
        started_at: int | None = None,
        finished_at: int | None = None,
    ) -> None:
        """Record that the task's build on ``host`` started and/or finished. A time that is
        stored already stays (a repeated report does not move it); ``None`` leaves a time
        as it is. Raises :class:`NotFound` for an unknown task; deleted with the task."""

    @abc.abstractmethod
    async def get_build(self, task_id: str) -> BuildRecord | None:
        """The build times of the task, or ``None`` if none were recorded."""
