"""Task sources: the archive a task deploys, stored content-addressed, and the earlier task
whose artifacts a ``source.task`` reuses.

A task's source is either its own archive (inline ``source.zip`` in the descriptor, or a file
the API streamed from a multipart upload), stored once in the blob store by its SHA-256, or a
reuse of an earlier task (``source.task``, following reuses of reuses up to
``_MAX_REUSE_HOPS``) that must have artifacts to deploy: a build that built, or an archive of
its own. Deleting a task hands the blobs it referenced (:meth:`TaskSources.digests`) to the
blob collector.
"""

from __future__ import annotations

import base64
from pathlib import Path

from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.protocol.descriptor import TaskDescriptor
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import MAX_PER_PAGE, TaskRecord

#: How many ``source.task`` hops are followed to the task whose artifacts are deployed.
_MAX_REUSE_HOPS = 16


class TaskSources:
    """Stores and reads the sources of tasks (archives and reused tasks)."""

    def __init__(self, storage: Storage, blobs: BlobStore) -> None:
        self._storage = storage
        self._blobs = blobs

    async def check_reuse(self, desc: TaskDescriptor) -> str | None:
        """The task whose artifacts a ``source.task`` reuses (following reuses of reuses),
        or ``None``; :class:`InvalidInput` at ``$.source.task`` if there is nothing to deploy."""
        named = desc.source.task if desc.source else None
        if named is None:
            return None
        earlier = named
        for _ in range(_MAX_REUSE_HOPS):
            task = await self._storage.get_task(earlier)
            if task is None:
                raise InvalidInput(
                    f"source.task {earlier} is not a known task", path="$.source.task"
                )
            source = task.descriptor.get("source")
            again = source.get("task") if isinstance(source, dict) else None
            if not isinstance(again, str):
                await self._check_artifacts(named, task)
                return task.id
            earlier = again
        raise InvalidInput(f"source.task {named} reuses too many tasks in a row",
                           path="$.source.task")  # fmt: skip

    async def _check_artifacts(self, named: str, task: TaskRecord) -> None:
        via = "" if named == task.id else f" (reused by {named})"
        if task.build_host is None:
            if task.source_digest is None:
                raise InvalidInput(
                    f"task {task.id}{via} has no artifacts: it neither built nor uploaded any",
                    path="$.source.task",
                )
            return  # a task without a build: its archive is what is deployed again
        if (await self._storage.list_artifacts(task_id=task.id, per_page=1)).total:
            return
        row = await self._storage.get_task_target(task.id, task.build_host)
        state = row.state if row is not None else "unknown"
        raise InvalidInput(
            f"task {task.id}{via} has no build artifacts (its build is {state}); "
            "reuse a task whose build is built",
            path="$.source.task",
        )

    async def store(self, desc: TaskDescriptor, archive: Path | None) -> str | None:
        """Store the task's archive (the uploaded ``archive`` file, moved into the blob store,
        else the inline ``source.zip``); its digest, or ``None`` without one."""
        if archive is not None:
            return await self._blobs.put_file(archive)
        if desc.source is None or desc.source.zip is None:
            return None
        return await self._blobs.put(base64.b64decode(desc.source.zip))

    async def size(self, digest: str | None) -> int | None:
        """The size of a stored archive, or ``None`` without one."""
        return None if digest is None else await self._blobs.size(digest)

    async def digests(self, record: TaskRecord) -> frozenset[str]:
        """The blobs a task references: its archive, its uploads and its artifacts."""
        found = {u.sha256 for u in await self._storage.list_uploads(record.id)}
        artifacts = await self._storage.list_artifacts(task_id=record.id, per_page=MAX_PER_PAGE)
        found.update(a.sha256 for a in artifacts.items)
        if record.source_digest is not None:
            found.add(record.source_digest)
        return frozenset(found)
