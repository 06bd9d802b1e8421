"""SQL implementation of build artifacts and build times (shared by both dialects;
docs/build.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import ArtifactRecord, BuildRecord, Page
from swarmdeploy.storage.sql_core import SqlCore, as_page
from swarmdeploy.storage.tables import artifacts, builds, tasks


def artifact_values(record: ArtifactRecord) -> dict[str, Any]:
    """Column values of ``artifacts`` for a record."""
    return {
        "task_id": record.task_id,
        "sha256": record.sha256,
        "name": record.name,
        "size_bytes": record.size_bytes,
        "build_host": record.build_host,
        "built_at": record.built_at,
        "commands": list(record.commands),
    }


def artifact_from_row(row: sa.Row[Any]) -> ArtifactRecord:
    """Rebuild an :class:`ArtifactRecord` from an ``artifacts`` row."""
    m = row._mapping
    return ArtifactRecord(
        task_id=m["task_id"],
        sha256=m["sha256"],
        name=m["name"],
        size_bytes=m["size_bytes"],
        build_host=m["build_host"],
        built_at=m["built_at"],
        commands=tuple(m["commands"]),
    )


class SqlArtifacts(SqlCore):
    """Build artifacts with their provenance, and build times."""

    async def _require_tasks(self, conn: Any, task_ids: set[str]) -> None:
        query = sa.select(tasks.c.id).where(tasks.c.id.in_(sorted(task_ids)))
        found = set((await conn.scalars(query)).all())
        missing = sorted(task_ids - found)
        if missing:
            raise NotFound(f"task {missing[0]!r} not found")

    async def add_artifacts(self, artifacts_: Sequence[ArtifactRecord]) -> int:
        """Insert the records, ignoring known ``(task_id, sha256)`` pairs; ``NotFound``."""
        if not artifacts_:
            return 0
        stored = 0
        async with self._write_tx() as conn:
            await self._require_tasks(conn, {a.task_id for a in artifacts_})
            for record in artifacts_:
                statement = self._insert_ignore(artifacts).values(artifact_values(record))
                stored += int((await conn.execute(statement)).rowcount)
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
        query = sa.select(artifacts)
        if task_id is not None:
            query = query.where(artifacts.c.task_id == task_id)
        if sha256 is not None:
            query = query.where(artifacts.c.sha256 == sha256)
        order = [artifacts.c.built_at, artifacts.c.task_id, artifacts.c.sha256]
        async with self._tx() as conn:
            total, rows = await self._page(conn, query, order, page, per_page)
        return as_page(total, [artifact_from_row(r) for r in rows], page, per_page)

    async def note_build(
        self,
        task_id: str,
        *,
        host: str,
        started_at: int | None = None,
        finished_at: int | None = None,
    ) -> None:
        """Insert the build row if missing, then fill the times still unset (``COALESCE``
        keeps the first value, also against a concurrent replica)."""
        async with self._write_tx() as conn:
            await self._require_tasks(conn, {task_id})
            await conn.execute(
                self._insert_ignore(builds).values(
                    task_id=task_id, host=host, started_at=None, finished_at=None
                )
            )
            await conn.execute(
                sa.update(builds)
                .where(builds.c.task_id == task_id)
                .values(
                    host=host,
                    started_at=sa.func.coalesce(builds.c.started_at, started_at),
                    finished_at=sa.func.coalesce(builds.c.finished_at, finished_at),
                )
            )

    async def get_build(self, task_id: str) -> BuildRecord | None:
        """The build times of the task, or ``None``."""
        async with self._tx() as conn:
            row = (await conn.execute(sa.select(builds).where(builds.c.task_id == task_id))).first()
        if row is None:
            return None
        m = row._mapping
        return BuildRecord(
            task_id=m["task_id"],
            host=m["host"],
            started_at=m["started_at"],
            finished_at=m["finished_at"],
        )
