"""Content-addressed storage of task archives (``source.zip``), keyed by SHA-256.

:class:`FileBlobStore` keeps blobs under ``DATA_DIR/blobs/<2 hex>/<64 hex>``; writes go to a
temporary file first and are renamed into place, so a reader never sees a partial blob. The
scale path (several replicas) swaps in an S3-compatible store behind the same interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from swarmdeploy.manager.errors import NotFoundError

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data`` (the blob key)."""
    return hashlib.sha256(data).hexdigest()


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
