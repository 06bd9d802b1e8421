"""Content-addressed blob stores: file, encrypted file and memory variants behave alike."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.services.blobs import BlobStore, FileBlobStore, MemoryBlobStore
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore


@pytest.fixture(params=["file", "encrypted", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "encrypted":
        return EncryptedFileBlobStore(tmp_path / "blobs", bytes(32))
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


async def test_detached_blob_is_out_of_sight_until_restored_or_discarded(store: BlobStore) -> None:
    digest = await store.put(b"collectable")
    info = await store.info(digest)
    assert info is not None and info.size_bytes == 11
    assert await store.list_blobs() == [info]
    aside = await store.detach(info)
    assert aside is not None and aside.size_bytes == 11
    assert await store.size(digest) is None and await store.list_blobs() == []
    await store.restore(aside)
    assert await store.get(digest) == b"collectable"
    again = await store.detach(info)
    assert again is not None
    await store.discard(again)
    assert await store.tidy(temporary_before_ms=None) == 0
    assert await store.info(digest) is None and await store.list_blobs() == []


async def test_memory_store_refuses_to_detach_bytes_stored_again() -> None:
    now = [1_000]
    store = MemoryBlobStore(clock=lambda: now[0])
    digest = await store.put(b"again")
    info = await store.info(digest)
    assert info is not None and info.stored_at_ms == 1_000
    now[0] = 2_000
    await store.put(b"again")
    assert await store.detach(info) is None
    assert await store.size(digest) == 5
