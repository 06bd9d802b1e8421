"""Blobs encrypted at rest: no plaintext on disk, ranges decrypt chunk by chunk, and any
tampering (a flipped bit, swapped or dropped chunks, a swapped file, a plaintext file) is
refused instead of served."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from swarmdeploy.manager.services.blob_cipher import (
    CHUNK_BYTES,
    HEADER_BYTES,
    TAG_BYTES,
    BlobDamaged,
    plain_size,
    sealed_size,
)
from swarmdeploy.manager.services.blobs import FileBlobStore
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore

KEY = bytes(range(32))
MARKER = b"known-archive-line-4711 "
SEALED_CHUNK = CHUNK_BYTES + TAG_BYTES


def _blob(chunks: float = 3.5) -> bytes:
    return (MARKER * (int(CHUNK_BYTES * chunks) // len(MARKER) + 1))[: int(CHUNK_BYTES * chunks)]


def _file(root: Path, digest: str) -> Path:
    return root / digest[:2] / digest


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES]
)
def test_sealed_size_inverts(size: int) -> None:
    assert plain_size(sealed_size(size)) == size


async def test_stored_file_has_no_plaintext_and_ranges_round_trip(tmp_path: Path) -> None:
    store = EncryptedFileBlobStore(tmp_path, KEY)
    data = _blob()
    digest = await store.put(data)
    raw = _file(tmp_path, digest).read_bytes()
    assert MARKER not in raw and b"4711" not in raw
    assert len(raw) == sealed_size(len(data))
    assert await store.size(digest) == len(data)
    assert await store.get(digest) == data
    for offset, length in [(0, 10), (CHUNK_BYTES - 5, 10), (CHUNK_BYTES * 2 + 7, CHUNK_BYTES * 3)]:
        assert await store.read_range(digest, offset, length) == data[offset : offset + length]
    assert await store.read_range(digest, len(data), 10) == b""
    info = await store.info(digest)
    assert info is not None and info.size_bytes == len(data)


async def test_adopted_file_is_encrypted(tmp_path: Path) -> None:
    store = EncryptedFileBlobStore(tmp_path / "blobs", KEY)
    source = tmp_path / "upload.part"
    source.write_bytes(_blob(1.2))
    digest = await store.put_file(source)
    assert digest == hashlib.sha256(_blob(1.2)).hexdigest() and not source.exists()
    assert MARKER not in _file(tmp_path / "blobs", digest).read_bytes()
    assert await store.get(digest) == _blob(1.2)


async def test_flipped_bit_in_a_chunk_is_refused(tmp_path: Path) -> None:
    store = EncryptedFileBlobStore(tmp_path, KEY)
    digest = await store.put(_blob())
    path = _file(tmp_path, digest)
    raw = bytearray(path.read_bytes())
    raw[HEADER_BYTES + SEALED_CHUNK + 100] ^= 1  # in chunk 1
    path.write_bytes(bytes(raw))
    assert await store.read_range(digest, 0, 100) == _blob()[:100]  # chunk 0 is intact
    with pytest.raises(BlobDamaged, match="chunk 1"):
        await store.read_range(digest, CHUNK_BYTES, 100)


async def test_swapped_chunks_are_refused(tmp_path: Path) -> None:
    store = EncryptedFileBlobStore(tmp_path, KEY)
    data = os.urandom(2 * CHUNK_BYTES)
    digest = await store.put(data)
    path = _file(tmp_path, digest)
    raw = path.read_bytes()
    first = raw[HEADER_BYTES : HEADER_BYTES + SEALED_CHUNK]
    second = raw[HEADER_BYTES + SEALED_CHUNK :]
    path.write_bytes(raw[:HEADER_BYTES] + second + first)
    with pytest.raises(BlobDamaged):
        await store.read_range(digest, 0, 10)


async def test_truncated_blob_is_refused(tmp_path: Path) -> None:
    store = EncryptedFileBlobStore(tmp_path, KEY)
    data = os.urandom(3 * CHUNK_BYTES)
    digest = await store.put(data)
    path = _file(tmp_path, digest)
    path.write_bytes(path.read_bytes()[: HEADER_BYTES + 2 * SEALED_CHUNK])  # last chunk gone
    with pytest.raises(BlobDamaged):
        await store.read_range(digest, 0, 10)


async def test_blob_file_of_another_digest_is_refused(tmp_path: Path) -> None:
    store = EncryptedFileBlobStore(tmp_path, KEY)
    first = await store.put(b"first archive")
    second = await store.put(b"other archive")
    _file(tmp_path, second).write_bytes(_file(tmp_path, first).read_bytes())
    with pytest.raises(BlobDamaged):
        await store.get(second)


async def test_wrong_key_is_refused(tmp_path: Path) -> None:
    digest = await EncryptedFileBlobStore(tmp_path, KEY).put(b"archive")
    with pytest.raises(BlobDamaged):
        await EncryptedFileBlobStore(tmp_path, bytes(32)).get(digest)


async def test_plaintext_blob_is_refused_until_converted(tmp_path: Path) -> None:
    digest = await FileBlobStore(tmp_path).put(_blob(1.5))
    store = EncryptedFileBlobStore(tmp_path, KEY)
    with pytest.raises(BlobDamaged, match="not an encrypted blob"):
        await store.get(digest)
    assert store.encrypt_plain_blobs() == 1
    assert store.encrypt_plain_blobs() == 0  # a second run leaves encrypted blobs alone
    assert MARKER not in _file(tmp_path, digest).read_bytes()
    assert await store.get(digest) == _blob(1.5)


async def test_conversion_refuses_a_file_that_does_not_match_its_name(tmp_path: Path) -> None:
    digest = await FileBlobStore(tmp_path).put(b"archive")
    _file(tmp_path, digest).write_bytes(b"something else")
    with pytest.raises(ValueError, match="does not hold the blob"):
        EncryptedFileBlobStore(tmp_path, KEY).encrypt_plain_blobs()
