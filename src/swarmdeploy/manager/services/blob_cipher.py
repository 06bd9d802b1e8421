"""Blobs encrypted at rest: XChaCha20-Poly1305 per fixed-size chunk (docs/storage.md,
"Encryption at rest").

File layout (all integers big-endian)::

    header  = MAGIC (8) | nonce prefix (16, random per file) | plaintext size (8)
    chunk i = XChaCha20-Poly1305(key, nonce = prefix | i (8), aad) of plaintext bytes
              [i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES)  -> ciphertext + 16-byte tag
    aad     = header | blob digest (32) | i (8) | 1 if i is the last chunk else 0

Every blob has at least one chunk (an empty blob: one empty chunk). Because the chunk index is
in the nonce and the associated data, chunks cannot be swapped or reordered; because the
header (with the size) and the "last" flag are authenticated, a blob cannot be truncated or
extended; because the digest is, one blob's file cannot stand in for another's. Any of these
fails authentication: :class:`BlobDamaged`, and nothing of that chunk is returned.

Reading a range decrypts only the chunks it touches, so memory per read is bounded by the
request plus one chunk whatever the blob's size. This module does file I/O on file objects it
is handed (blocking; the store calls it in a worker thread) and no other I/O.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from nacl import bindings
from nacl.exceptions import CryptoError

MAGIC = b"SDBLOBX1"
CHUNK_BYTES = 64 * 1024
TAG_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
KEY_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_PREFIX_BYTES = 16
HEADER_BYTES = len(MAGIC) + _PREFIX_BYTES + 8
_SEALED_CHUNK = CHUNK_BYTES + TAG_BYTES


class BlobDamaged(Exception):
    """A stored blob failed authentication (tampered, truncated, swapped or not encrypted);
    its bytes must not be served."""


def chunk_count(plain_size: int) -> int:
    """Chunks of a blob of ``plain_size`` bytes (at least one)."""
    return max(1, -(-plain_size // CHUNK_BYTES))


def sealed_size(plain_size: int) -> int:
    """The file size of an encrypted blob of ``plain_size`` bytes."""
    return HEADER_BYTES + plain_size + chunk_count(plain_size) * TAG_BYTES


def plain_size(file_size: int) -> int:
    """The plaintext size of an encrypted blob file of ``file_size`` bytes (what
    :func:`sealed_size` inverts); ``-1`` for a size no encrypted blob has."""
    body = file_size - HEADER_BYTES
    if body < TAG_BYTES:
        return -1
    full, rest = divmod(body, _SEALED_CHUNK)
    if rest == 0:
        return full * CHUNK_BYTES
    if rest < TAG_BYTES or (rest == TAG_BYTES and full > 0):
        return -1
    return full * CHUNK_BYTES + rest - TAG_BYTES


def _aad(header: bytes, digest: str, index: int, last: bool) -> bytes:
    return (
        header + bytes.fromhex(digest) + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")
    )


def _nonce(header: bytes, index: int) -> bytes:
    return header[len(MAGIC) : len(MAGIC) + _PREFIX_BYTES] + index.to_bytes(8, "big")


class BlobCipher:
    """Encrypts blobs into and decrypts ranges out of the layout above with one 32-byte key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the blob key must be {KEY_BYTES} bytes")
        self._key = key

    def encrypt_stream(self, source: BinaryIO, size: int, digest: str, out: BinaryIO) -> None:
        """Write the encrypted form of the ``size`` bytes read from ``source`` (the blob
        with SHA-256 ``digest``) to ``out``, one chunk in memory at a time."""
        header = MAGIC + os.urandom(_PREFIX_BYTES) + size.to_bytes(8, "big")
        out.write(header)
        chunks = chunk_count(size)
        for index in range(chunks):
            plain = source.read(CHUNK_BYTES)
            if len(plain) != min(CHUNK_BYTES, size - index * CHUNK_BYTES):
                raise ValueError("the source changed size while it was encrypted")
            aad = _aad(header, digest, index, index == chunks - 1)
            out.write(
                bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
                    plain, aad, _nonce(header, index), self._key
                )
            )

    def read_range(
        self, sealed: BinaryIO, file_size: int, digest: str, offset: int, length: int
    ) -> bytes:
        """Up to ``length`` plaintext bytes from ``offset`` of the encrypted blob open as
        ``sealed`` (its file is ``file_size`` bytes). Raises :class:`BlobDamaged`."""
        size = plain_size(file_size)
        header = sealed.read(HEADER_BYTES)
        if size < 0 or header[: len(MAGIC)] != MAGIC:
            raise BlobDamaged(f"blob {digest} is not an encrypted blob of this store")
        if int.from_bytes(header[-8:], "big") != size:
            raise BlobDamaged(f"blob {digest} was truncated or extended")
        end = min(size, offset + length)
        if offset >= end:
            return b""
        chunks, last = [], chunk_count(size) - 1
        for index in range(offset // CHUNK_BYTES, (end - 1) // CHUNK_BYTES + 1):
            sealed.seek(HEADER_BYTES + index * _SEALED_CHUNK)
            ciphertext = sealed.read(_SEALED_CHUNK)
            try:
                chunks.append(
                    bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                        ciphertext,
                        _aad(header, digest, index, index == last),
                        _nonce(header, index),
                        self._key,
                    )
                )
            except CryptoError:
                raise BlobDamaged(f"chunk {index} of blob {digest} failed authentication") from None
        start = offset - (offset // CHUNK_BYTES) * CHUNK_BYTES
        return b"".join(chunks)[start : start + end - offset]
