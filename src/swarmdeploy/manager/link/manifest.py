"""What a target receives for a task: its artifacts, its announcement and its manifest
(docs/protocol.md §4.2, §6.3).

The stored task keeps the validated descriptor as JSON (camelCase field names) and the
digest of its archive. A target's part depends on its role: the build host gets the source
archive and the build commands (``kind: build``); deploy targets get install and run commands
and, as artifacts, the archive -- or, for a task with a build, the artifacts the build host
uploaded, and for ``source.task``, the artifacts of that earlier task.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from swarmdeploy.manager.link.uploads import UploadReceiver
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.protocol.manifest import ArtifactInfo, TaskManifest
from swarmdeploy.protocol.messages import Announce
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TaskRecord

log = logging.getLogger(__name__)

Role = Literal["deploy", "build"]


def _section(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    for key in path:
        value = doc.get(key)
        doc = value if isinstance(value, dict) else {}
    return doc


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


def _archive_name(head: bytes) -> str:
    if head.startswith(b"PK"):
        return "source.zip"
    if head.startswith(b"\x1f\x8b"):
        return "source.tar.gz"
    return "source.tar"


class ArtifactCatalog:
    """Finds the artifacts of a (task, role); results that cannot change are cached."""

    def __init__(
        self, storage: Storage, blobs: BlobStore, uploads: UploadReceiver, *, chunk_bytes: int
    ) -> None:
        self._storage = storage
        self._blobs = blobs
        self._uploads = uploads
        self._chunk_bytes = chunk_bytes
        self._cache: dict[tuple[str, Role], list[ArtifactInfo]] = {}

    async def artifacts(self, task: TaskRecord, role: Role) -> list[ArtifactInfo] | None:
        """The artifacts a target with ``role`` fetches, or ``None`` while they do not
        exist yet (a build still running, a blob missing)."""
        key = (task.id, role)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = await self._find(task, role)
        if found is not None:
            if len(self._cache) >= 1024:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = found
        return found

    async def _find(self, task: TaskRecord, role: Role) -> list[ArtifactInfo] | None:
        if role == "build":
            return await self._source(task)
        earlier = _section(task.descriptor, "source").get("task")
        if isinstance(earlier, str):
            source = await self._storage.get_task(earlier)
            if source is None:
                log.warning("source task %s of task %s is gone", earlier, task.id)
                return None
            return await self._deliverable(source)
        return await self._deliverable(task)

    async def _deliverable(self, task: TaskRecord) -> list[ArtifactInfo] | None:
        """What deploy targets of ``task`` fetch: its build's uploads once the build host
        reported ``built`` (``None`` before), else its archive."""
        if task.build_host is None:
            return await self._source(task)
        rows = await self._storage.task_targets(task.id)
        if not any(r.role == "build" and r.state == TargetState.BUILT.value for r in rows):
            return None  # the build has not delivered (yet)
        return await self._uploads.completed(task.id)

    async def _source(self, task: TaskRecord) -> list[ArtifactInfo] | None:
        digest = task.source_digest
        if digest is None:
            return []
        size = await self._blobs.size(digest)
        if size is None:
            log.error("the archive %s of task %s is missing from the blob store", digest, task.id)
            return None
        head = await self._blobs.read_range(digest, 0, 4)
        return [
            ArtifactInfo(
                name=_archive_name(head),
                sha256=digest,
                size_bytes=size,
                chunk_bytes=self._chunk_bytes,
            )
        ]


def announcement(task: TaskRecord, role: Role, artifacts: list[ArtifactInfo]) -> Announce:
    """First stage of delivery (§6.3): enough to assess the task, nothing to run.

    ``arch`` stays empty (any architecture) until the descriptor gains an architecture
    field; ``unpacked_bytes`` is 0 (unknown), so the agent assesses with its own margin.
    """
    return Announce(
        task_id=task.id,
        kind="build" if role == "build" else "deploy",
        size_bytes=sum(a.size_bytes for a in artifacts),
        unpacked_bytes=0,
        arch=[],
        debug=task.debug,
        expires_at_ms=task.expires_at,
    )


def build_manifest(task: TaskRecord, role: Role, artifacts: list[ArtifactInfo]) -> TaskManifest:
    """The manifest of ``task`` for a target with ``role`` (§4.2 ``TaskManifest``)."""
    doc = task.descriptor
    common: dict[str, Any] = {
        "task_id": task.id,
        "debug": task.debug,
        "created_at_ms": task.created_at,
        "expires_at_ms": task.expires_at,
        "artifacts": artifacts,
    }
    if role == "build":
        build = _section(doc, "build")
        return TaskManifest(
            kind="build",
            build_commands=_strings(build, "commands"),
            build_artifacts=_strings(build, "artifacts"),
            **common,
        )
    run = _section(doc, "deploy", "run")
    return TaskManifest(
        kind="deploy",
        install=_strings(_section(doc, "deploy", "install"), "commands"),
        run=_strings(run, "commands"),
        auto_restart=bool(run.get("autoRestart", False)),
        **common,
    )
