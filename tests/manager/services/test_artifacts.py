"""Artifact queries and downloads on the in-memory storage and blob store."""

from __future__ import annotations

import pytest

from swarmdeploy.manager.errors import InvalidInput, NotFoundError
from swarmdeploy.manager.services.artifacts import ArtifactService, artifact_json
from swarmdeploy.manager.services.blobs import MemoryBlobStore
from swarmdeploy.storage.records import ArtifactRecord
from tests.manager.services.conftest import World


def deploy_doc() -> dict[str, object]:
    return {"deploy": {"install": {"commands": ["true"]}, "target": {"ids": ["d1"]}}}


async def setup(world: World, blob: bytes) -> tuple[ArtifactService, str, list[str]]:
    """Two tasks whose builds produced the same bytes (stored once as a blob)."""
    blobs = MemoryBlobStore()
    digest = await blobs.put(blob)
    await world.add_targets(["d1"])
    ids = []
    for at in (200, 100):
        view = await world.tasks.create(deploy_doc(), created_by="me")
        record = ArtifactRecord(view.record.id, digest, "artifacts.tar.gz", len(blob), "b1", at,
                                ("make",))  # fmt: skip
        await world.storage.add_artifacts([record])
        ids.append(view.record.id)
    return ArtifactService(world.storage, blobs), digest, ids


async def test_artifact_by_digest_names_first_build_and_every_task(world: World) -> None:
    service, digest, (late, early) = await setup(world, b"x" * 10)
    detail = await service.get(digest)
    assert detail.first.task_id == early and detail.tasks == [early, late]
    assert artifact_json(detail.first) == {
        "sha256": digest, "name": "artifacts.tar.gz", "size": 10, "task": early,
        "buildHost": "b1", "builtAt": 100, "commands": ["make"],
    }  # fmt: skip
    page = await service.list(task_id=late, page=1, per_page=10)
    assert [r.task_id for r in page.items] == [late]


async def test_download_streams_the_blob_in_chunks_of_bounded_size(world: World) -> None:
    blob = bytes(range(256)) * 10_000  # 2.5 MB: three chunks
    service, digest, _ = await setup(world, blob)
    download = await service.open(digest)
    chunks = [chunk async for chunk in download.chunks]
    assert (download.name, download.size) == ("artifacts.tar.gz", len(blob))
    assert b"".join(chunks) == blob
    assert len(chunks) == 3 and max(len(c) for c in chunks) == 1 << 20


async def test_unknown_or_malformed_digest_and_missing_blob_are_refused(world: World) -> None:
    service, digest, _ = await setup(world, b"abc")
    with pytest.raises(NotFoundError, match="no build produced"):
        await service.get("0" * 64)
    with pytest.raises(InvalidInput, match="64 lower-case hex"):
        await service.get("ABC")
    empty = ArtifactService(world.storage, MemoryBlobStore())
    with pytest.raises(NotFoundError, match="no longer stored"):
        await empty.open(digest)
