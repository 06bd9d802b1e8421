"""Content-addressed blob stores: file and memory variants behave alike."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.services.blobs import BlobStore, FileBlobStore, MemoryBlobStore


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return FileBlobStore(tmp_path / "blobs") if request.param == "file" else MemoryBlobStore()


async def test_put_get_size_delete(store: BlobStore) -> None:
    digest = await store.put(b"payload")
    assert digest == hashlib.sha256(b"payload").hexdigest()
    assert await store.get(digest) == b"payload"
    assert await store.size(digest) == 7
    assert await store.put(b"payload") == digest
    await store.delete(digest)
    assert await store.size(digest) is None
    with pytest.raises(NotFoundError):
        await store.get(digest)


async def test_malformed_digest_refused(store: BlobStore) -> None:
    with pytest.raises(ValueError):
        await store.get("../../etc/passwd")


async def test_file_store_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = await store.put(b"x" * 100_000)
    assert [p.name for p in (tmp_path / digest[:2]).iterdir()] == [digest]
