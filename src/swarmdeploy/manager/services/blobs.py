"""Content-addressed storage of task archives (``source.zip``), keyed by SHA-256.

:class:`FileBlobStore` keeps blobs under ``DATA_DIR/blobs/<2 hex>/<64 hex>``; writes go to a
temporary file first and are renamed into place, so a reader never sees a partial blob.
:meth:`BlobStore.read_range` serves one chunk without loading the blob (docs/protocol.md §6.5:
manager memory per transfer is bounded by the chunk window) and :meth:`BlobStore.put_file`
adopts a file received in chunks (§6.6) without reading it into memory. The scale path
(several replicas) swaps in an S3-compatible store behind the same interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from swarmdeploy.manager.errors import NotFoundError

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_HASH_BLOCK = 1 << 20


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data`` (the blob key)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The lowercase hex SHA-256 of a file, read in 1 MiB blocks (blocking)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _check_digest(digest: str) -> str:
    if not _DIGEST_RE.match(digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
    return digest


class BlobStore(Protocol):
    """Where archives live. Storing the same bytes twice keeps one copy."""

    async def put(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256 hex digest."""

    async def get(self, digest: str) -> bytes:
        """The blob's bytes. Raises :class:`NotFoundError`."""

    async def size(self, digest: str) -> int | None:
        """The blob's size in bytes, or ``None`` if it is not stored."""

    async def delete(self, digest: str) -> None:
        """Remove the blob (no error if it is absent)."""

    async def read_range(self, digest: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of the blob from ``offset``. Raises :class:`NotFoundError`."""

    async def put_file(self, path: Path) -> str:
        """Adopt the file at ``path`` (it is moved or removed); returns its digest."""


class MemoryBlobStore:
    """:class:`BlobStore` in a dictionary (tests)."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    async def put(self, data: bytes) -> str:
        """Store ``data``; returns its digest."""
        digest = sha256_hex(data)
        self._blobs[digest] = bytes(data)
        return digest

    async def get(self, digest: str) -> bytes:
        """The stored bytes; :class:`NotFoundError` if absent."""
        try:
            return self._blobs[_check_digest(digest)]
        except KeyError:
            raise NotFoundError(f"blob {digest} is not stored") from None

    async def size(self, digest: str) -> int | None:
        """Size of the blob or ``None``."""
        blob = self._blobs.get(_check_digest(digest))
        return None if blob is None else len(blob)

    async def delete(self, digest: str) -> None:
        """Forget the blob."""
        self._blobs.pop(_check_digest(digest), None)

    async def read_range(self, digest: str, offset: int, length: int) -> bytes:
        """A slice of the stored bytes; :class:`NotFoundError` if absent."""
        return (await self.get(digest))[offset : offset + length]

    async def put_file(self, path: Path) -> str:
        """Store the file's bytes and remove the file."""
        digest = await self.put(await asyncio.to_thread(path.read_bytes))
        await asyncio.to_thread(path.unlink)
        return digest


class FileBlobStore:
    """:class:`BlobStore` in a directory; file work runs in a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        digest = _check_digest(digest)
        return self.root / digest[:2] / digest

    def _write(self, data: bytes) -> str:
        digest = sha256_hex(data)
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    async def put(self, data: bytes) -> str:
        """Store ``data`` atomically; returns its digest."""
        return await asyncio.to_thread(self._write, data)

    async def get(self, digest: str) -> bytes:
        """The stored bytes; :class:`NotFoundError` if absent."""
        path = self._path(digest)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not stored") from None

    async def size(self, digest: str) -> int | None:
        """Size of the blob or ``None``."""
        path = self._path(digest)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            return None

    async def delete(self, digest: str) -> None:
        """Remove the blob file."""
        await asyncio.to_thread(self._path(digest).unlink, missing_ok=True)

    def _read_range(self, digest: str, offset: int, length: int) -> bytes:
        try:
            with self._path(digest).open("rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not stored") from None

    async def read_range(self, digest: str, offset: int, length: int) -> bytes:
        """Seek and read one range of the blob file in a worker thread."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        return await asyncio.to_thread(self._read_range, digest, offset, length)

    def _adopt(self, source: Path) -> str:
        digest = file_sha256(source)
        path = self._path(digest)
        if path.exists():
            source.unlink()
            return digest
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.move(source, tmp)  # a rename on the same file system, else a copy
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    async def put_file(self, path: Path) -> str:
        """Move the file into the store (digest computed while streaming it)."""
        return await asyncio.to_thread(self._adopt, path)
