""":class:`EncryptedFileBlobStore`: the file blob store with every blob encrypted at rest.

Same directory layout, names (the SHA-256 of the *plaintext*), atomic writes and garbage
collection as :class:`~.blobs.FileBlobStore`; only the bytes in the files differ
(:mod:`.blob_cipher`). Sizes are plaintext sizes, computed from the file size without
reading the file. A file that fails authentication -- tampered, truncated, swapped, or a
plaintext blob left from before encryption -- raises :class:`~.blob_cipher.BlobDamaged`
and none of its bytes are served.

:meth:`EncryptedFileBlobStore.encrypt_plain_blobs` converts a plaintext store in place
(``swarmdeploy manager --encrypt-storage --migrate``); it skips blobs that are encrypted
already, so an interrupted conversion is finished by running it again.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.services.blob_cipher import MAGIC, BlobCipher, plain_size
from swarmdeploy.manager.services.blobs import (
    _DIGEST_RE,
    _TEMP_PREFIX,
    FileBlobStore,
    _touch,
    file_sha256,
    sha256_hex,
)


class EncryptedFileBlobStore(FileBlobStore):
    """:class:`FileBlobStore` whose files hold XChaCha20-Poly1305 encrypted chunks."""

    def __init__(self, root: Path, key: bytes) -> None:
        super().__init__(root)
        self._cipher = BlobCipher(key)

    def _seal_into_place(self, source: BinaryIO, size: int, digest: str) -> None:
        path = self._path(digest)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                self._cipher.encrypt_stream(source, size, digest, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write(self, data: bytes) -> str:
        digest = sha256_hex(data)
        if not _touch(self._path(digest)):
            self._seal_into_place(io.BytesIO(data), len(data), digest)
        return digest

    def _adopt(self, source: Path) -> str:
        digest = file_sha256(source)
        if not _touch(self._path(digest)):
            with source.open("rb") as fh:
                self._seal_into_place(fh, os.fstat(fh.fileno()).st_size, digest)
        source.unlink()
        return digest

    def _blob_size(self, file_size: int) -> int:
        return max(0, plain_size(file_size))

    def _read_range(self, digest: str, offset: int, length: int) -> bytes:
        try:
            with self._path(digest).open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                return self._cipher.read_range(fh, size, digest, offset, length)
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not stored") from None

    async def get(self, digest: str) -> bytes:
        """The whole blob, decrypted and authenticated; :class:`NotFoundError` if absent."""
        size = await self.size(digest)
        if size is None:
            raise NotFoundError(f"blob {digest} is not stored")
        return await self.read_range(digest, 0, size)

    # -- conversion of a plaintext store -------------------------------------------------------
    def _encrypt_plain(self, path: Path) -> bool:
        with path.open("rb") as fh:
            if fh.read(len(MAGIC)) == MAGIC:
                return False
        if file_sha256(path) != path.name:
            raise ValueError(f"{path} does not hold the blob its name says; not converted")
        with path.open("rb") as fh:
            self._seal_into_place(fh, os.fstat(fh.fileno()).st_size, path.name)
        return True

    def encrypt_plain_blobs(self) -> int:
        """Encrypt every plaintext blob file in place (blocking); returns how many were.
        Each file is replaced atomically; encrypted ones are left as they are."""
        converted = 0
        for folder in self._folders():
            for path in sorted(folder.iterdir()):
                if _DIGEST_RE.match(path.name) and self._encrypt_plain(path):
                    converted += 1
        return converted

    async def read_range(self, digest: str, offset: int, length: int) -> bytes:
        """Decrypt the chunks holding ``[offset, offset + length)`` in a worker thread.
        Raises :class:`NotFoundError` or :class:`~.blob_cipher.BlobDamaged`."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        return await asyncio.to_thread(self._read_range, digest, offset, length)
