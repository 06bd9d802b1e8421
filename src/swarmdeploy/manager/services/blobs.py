"""Content-addressed storage of task archives (``source.zip``), keyed by SHA-256.

:class:`FileBlobStore` keeps blobs under ``DATA_DIR/blobs/<2 hex>/<64 hex>``; writes go to a
temporary file first and are renamed into place, so a reader never sees a partial blob.
:meth:`BlobStore.read_range` serves one chunk without loading the blob (docs/protocol.md §6.5:
manager memory per transfer is bounded by the chunk window) and :meth:`BlobStore.put_file`
adopts a file received in chunks (§6.6) without reading it into memory. The scale path
(several replicas) swaps in an S3-compatible store behind the same interface.

Garbage collection (:mod:`.blob_gc`, docs/storage.md "Blob lifecycle") uses the rest of the
interface: :meth:`BlobStore.list_blobs` with the time each blob was last stored -- storing
bytes that are there already moves that time forward, so a blob a new task is about to
reference looks fresh -- and :meth:`BlobStore.detach`, which takes a blob out of sight
atomically unless it was stored again since it was listed; a detached blob is then either
restored or discarded. While detached, a ``put`` of the same bytes stores a new copy, which
a restore keeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from swarmdeploy.manager.clock import Clock, wall_ms
from swarmdeploy.manager.errors import NotFoundError

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_HASH_BLOCK = 1 << 20
_TEMP_PREFIX = ".tmp-"
_TRASH = ".detached"
_HANDLE_RE = re.compile(r"^([0-9a-f]{64})\.[0-9a-f]{8}$")


@dataclasses.dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its digest, size and when it was last stored (ms since the epoch)."""

    digest: str
    size_bytes: int
    stored_at_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class DetachedBlob:
    """A blob :meth:`BlobStore.detach` took out of sight; ``handle`` names it in the store."""

    digest: str
    size_bytes: int
    handle: str


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


def _touch(path: Path) -> bool:
    """Mark a stored blob as stored now (the garbage collector's grace period starts
    again); ``False`` if it is not there."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _mtime_ms(stat: os.stat_result) -> int:
    return stat.st_mtime_ns // 1_000_000


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

    async def info(self, digest: str) -> BlobInfo | None:
        """The stored blob's size and time of last storing, or ``None``."""

    async def list_blobs(self) -> list[BlobInfo]:
        """Every stored blob (detached ones and unfinished writes are not listed)."""

    async def detach(self, blob: BlobInfo) -> DetachedBlob | None:
        """Take the blob out of sight atomically -- readers see it absent, a ``put`` stores
        a new copy -- unless it is gone or was stored again since ``blob`` was read (its
        time of storing moved): then nothing changes and the answer is ``None``."""

    async def restore(self, blob: DetachedBlob) -> None:
        """Bring a detached blob back; a copy stored meanwhile is kept instead."""

    async def discard(self, blob: DetachedBlob) -> None:
        """Delete a detached blob for good."""

    async def tidy(self, *, temporary_before_ms: int | None) -> int:
        """Undo what an interrupted run left: restore every detached blob and remove the
        temporary files of unfinished writes last written before ``temporary_before_ms``
        (all of them with ``None``). Returns how many temporary files went."""


class MemoryBlobStore:
    """:class:`BlobStore` in a dictionary (tests); times of storing come from ``clock``."""

    def __init__(self, clock: Clock = wall_ms) -> None:
        self._clock = clock
        self._blobs: dict[str, bytes] = {}
        self._stored_at: dict[str, int] = {}
        self._detached: dict[str, tuple[str, bytes, int]] = {}

    async def put(self, data: bytes) -> str:
        """Store ``data`` (again: its time of storing moves); returns its digest."""
        digest = sha256_hex(data)
        self._blobs[digest] = bytes(data)
        self._stored_at[digest] = self._clock()
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
        self._stored_at.pop(digest, None)

    async def read_range(self, digest: str, offset: int, length: int) -> bytes:
        """A slice of the stored bytes; :class:`NotFoundError` if absent."""
        return (await self.get(digest))[offset : offset + length]

    async def put_file(self, path: Path) -> str:
        """Store the file's bytes and remove the file."""
        digest = await self.put(await asyncio.to_thread(path.read_bytes))
        await asyncio.to_thread(path.unlink)
        return digest

    async def info(self, digest: str) -> BlobInfo | None:
        """Size and time of storing, or ``None``."""
        blob = self._blobs.get(_check_digest(digest))
        return None if blob is None else BlobInfo(digest, len(blob), self._stored_at[digest])

    async def list_blobs(self) -> list[BlobInfo]:
        """Every stored blob, by digest."""
        return [BlobInfo(d, len(b), self._stored_at[d]) for d, b in sorted(self._blobs.items())]

    async def detach(self, blob: BlobInfo) -> DetachedBlob | None:
        """Move the blob aside unless it is gone or was stored again."""
        data = self._blobs.get(blob.digest)
        if data is None or self._stored_at[blob.digest] != blob.stored_at_ms:
            return None
        handle = f"{blob.digest}.{os.urandom(4).hex()}"
        self._detached[handle] = (blob.digest, self._blobs.pop(blob.digest), blob.stored_at_ms)
        del self._stored_at[blob.digest]
        return DetachedBlob(blob.digest, len(data), handle)

    async def restore(self, blob: DetachedBlob) -> None:
        """Put it back unless a new copy was stored meanwhile."""
        found = self._detached.pop(blob.handle, None)
        if found is not None and found[0] not in self._blobs:
            self._blobs[found[0]], self._stored_at[found[0]] = found[1], found[2]

    async def discard(self, blob: DetachedBlob) -> None:
        """Forget the detached blob."""
        self._detached.pop(blob.handle, None)

    async def tidy(self, *, temporary_before_ms: int | None) -> int:
        """Restore detached blobs (there are no temporary files in memory)."""
        for handle, (digest, _, _) in list(self._detached.items()):
            await self.restore(DetachedBlob(digest, 0, handle))
        return 0


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
        if _touch(path):
            return digest
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
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
            return self._blob_size((await asyncio.to_thread(path.stat)).st_size)
        except FileNotFoundError:
            return None

    def _blob_size(self, file_size: int) -> int:
        """The size of the blob kept in a file of ``file_size`` bytes."""
        return file_size

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
        if _touch(path):
            source.unlink()
            return digest
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
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

    # -- garbage collection (docs/storage.md "Blob lifecycle") ---------------------------------
    def _info(self, path: Path) -> BlobInfo | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return BlobInfo(path.name, self._blob_size(stat.st_size), _mtime_ms(stat))

    async def info(self, digest: str) -> BlobInfo | None:
        """Size and time of storing (the file's mtime), or ``None``."""
        return await asyncio.to_thread(self._info, self._path(digest))

    def _folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if len(p.name) == 2 and p.is_dir())

    def _list(self) -> list[BlobInfo]:
        found = []
        for folder in self._folders():
            for path in sorted(folder.iterdir()):
                info = self._info(path) if _DIGEST_RE.match(path.name) else None
                if info is not None:
                    found.append(info)
        return found

    async def list_blobs(self) -> list[BlobInfo]:
        """Every blob file, by digest (temporary files and detached blobs left out)."""
        return await asyncio.to_thread(self._list)

    def _aside(self, handle: str) -> Path:
        if not _HANDLE_RE.match(handle):
            raise ValueError(f"not a detached blob: {handle!r}")
        return self.root / _TRASH / handle

    def _detach(self, blob: BlobInfo) -> DetachedBlob | None:
        (self.root / _TRASH).mkdir(mode=0o700, exist_ok=True)
        handle = f"{_check_digest(blob.digest)}.{os.urandom(4).hex()}"
        aside = self._aside(handle)
        try:
            os.rename(self._path(blob.digest), aside)  # atomic: now or never stored again
        except FileNotFoundError:
            return None
        stat = aside.stat()
        detached = DetachedBlob(blob.digest, self._blob_size(stat.st_size), handle)
        if _mtime_ms(stat) != blob.stored_at_ms:  # stored again since it was listed
            self._restore(detached)
            return None
        return detached

    async def detach(self, blob: BlobInfo) -> DetachedBlob | None:
        """Rename the blob into ``.detached/`` unless it is gone or its mtime moved."""
        return await asyncio.to_thread(self._detach, blob)

    def _restore(self, blob: DetachedBlob) -> None:
        aside = self._aside(blob.handle)
        if not aside.exists():
            return
        path = self._path(blob.digest)
        try:
            os.link(aside, path)  # never replaces a copy stored meanwhile
        except FileExistsError:
            pass
        except OSError:  # no hard links here: a rename (a copy stored meanwhile is identical)
            os.replace(aside, path)
            return
        aside.unlink(missing_ok=True)

    async def restore(self, blob: DetachedBlob) -> None:
        """Move the detached blob back unless a new copy was stored meanwhile."""
        await asyncio.to_thread(self._restore, blob)

    async def discard(self, blob: DetachedBlob) -> None:
        """Delete the detached file (never the blob's own path)."""
        await asyncio.to_thread(self._aside(blob.handle).unlink, missing_ok=True)

    def _tidy(self, temporary_before_ms: int | None) -> int:
        trash = self.root / _TRASH
        for aside in sorted(trash.iterdir()) if trash.is_dir() else []:
            match = _HANDLE_RE.match(aside.name)
            if match is not None:
                self._restore(DetachedBlob(match.group(1), 0, aside.name))
        removed = 0
        for folder in self._folders():
            for path in folder.iterdir():
                if not path.name.startswith(_TEMP_PREFIX):
                    continue
                if temporary_before_ms is None or _mtime_ms(path.stat()) < temporary_before_ms:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    async def tidy(self, *, temporary_before_ms: int | None) -> int:
        """Restore ``.detached/`` blobs; remove old ``.tmp-*`` files of unfinished writes."""
        return await asyncio.to_thread(self._tidy, temporary_before_ms)
