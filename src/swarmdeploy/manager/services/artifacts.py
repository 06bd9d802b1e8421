"""Build artifacts for operators: list, look up by digest, download (docs/api.md "Artifacts").

Artifacts are recorded by :class:`~swarmdeploy.manager.services.builds.BuildRecorder` when a
build host delivers; their bytes are blobs in the
:class:`~swarmdeploy.manager.services.blobs.BlobStore`, keyed by SHA-256. A download is
streamed from the blob in chunks of :data:`DOWNLOAD_CHUNK_BYTES` (memory per download is one
chunk, whatever the artifact's size).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

from swarmdeploy.manager.errors import InvalidInput, NotFoundError
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import MAX_PER_PAGE, ArtifactRecord, Page

DOWNLOAD_CHUNK_BYTES = 1 << 20
_DIGEST_RE = re.compile(r"\A[0-9a-f]{64}\Z")


def artifact_json(record: ArtifactRecord) -> dict[str, Any]:
    """The API document of one artifact record (camelCase)."""
    return {
        "sha256": record.sha256,
        "name": record.name,
        "size": record.size_bytes,
        "task": record.task_id,
        "buildHost": record.build_host,
        "builtAt": record.built_at,
        "commands": list(record.commands),
    }


@dataclasses.dataclass(frozen=True, slots=True)
class ArtifactDetail:
    """An artifact by digest: its first build's record and every task that built it."""

    first: ArtifactRecord
    tasks: list[str]


@dataclasses.dataclass(frozen=True, slots=True)
class Download:
    """An open download: ``size`` bytes of ``chunks``; the name to save it as."""

    name: str
    size: int
    chunks: AsyncIterator[bytes]


def check_digest(sha256: str) -> str:
    """``sha256`` if it is 64 lower-case hex characters, else :class:`InvalidInput`."""
    if not _DIGEST_RE.match(sha256):
        raise InvalidInput("an artifact is named by its SHA-256: 64 lower-case hex characters",
                           path="path.sha256")  # fmt: skip
    return sha256


class ArtifactService:
    """Reads artifact records and serves their blobs (stateless: cheap to build)."""

    def __init__(self, storage: Storage, blobs: BlobStore) -> None:
        self._storage = storage
        self._blobs = blobs

    async def list(self, *, task_id: str | None, page: int, per_page: int) -> Page[ArtifactRecord]:
        """Artifact records, oldest build first, optionally of one task only."""
        return await self._storage.list_artifacts(task_id=task_id, page=page, per_page=per_page)

    async def get(self, sha256: str) -> ArtifactDetail:
        """The artifact with this digest; :class:`NotFoundError` if no build produced it."""
        found = await self._storage.list_artifacts(
            sha256=check_digest(sha256), per_page=MAX_PER_PAGE
        )
        if not found.items:
            raise NotFoundError(f"no build produced an artifact with SHA-256 {sha256}")
        return ArtifactDetail(found.items[0], [r.task_id for r in found.items])

    async def open(self, sha256: str) -> Download:
        """Start streaming the artifact's bytes; :class:`NotFoundError` if it is unknown or
        its blob is gone."""
        detail = await self.get(sha256)
        size = await self._blobs.size(sha256)
        if size is None:
            raise NotFoundError(f"the bytes of artifact {sha256} are no longer stored")
        return Download(detail.first.name, size, self._chunks(sha256, size))

    async def _chunks(self, sha256: str, size: int) -> AsyncIterator[bytes]:
        offset = 0
        while offset < size:
            data = await self._blobs.read_range(sha256, offset, DOWNLOAD_CHUNK_BYTES)
            if not data:
                raise NotFoundError(f"artifact {sha256} is shorter than recorded")
            offset += len(data)
            yield data
