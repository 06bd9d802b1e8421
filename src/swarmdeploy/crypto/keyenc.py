"""Ed25519 private keys encrypted at rest: the CA key and operator signing keys (issue 5).

A 32-byte seed is encrypted with XChaCha20-Poly1305 (libsodium AEAD, via PyNaCl) under either

* a key derived from a passphrase with Argon2id (``KDF: argon2id``; parameters and salt in the
  file), or
* a 32-byte key from the manager's secret store (``KDF: none``; ``Key-Label`` names it).

The result is armored text, safe to export and keep offline::

    -----BEGIN SWARMDEPLOY ENCRYPTED KEY-----
    Version: 1
    KDF: argon2id
    KDF-Ops: 3
    KDF-Mem: 268435456
    Salt: <base64>
    Key-Label:
    Public-Key: <base64 raw Ed25519 public key>
    Comment: operator alice

    <base64 of 24-byte nonce || ciphertext>
    -----END SWARMDEPLOY ENCRYPTED KEY-----

Every header line is authenticated (it is the AEAD's associated data), so a changed
parameter, label or public key fails exactly like a wrong passphrase. :func:`describe` reads
the headers without decrypting (which key is this?). No I/O.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.pwhash.argon2id as argon2id
from nacl.exceptions import CryptoError as SodiumError

from swarmdeploy.crypto.errors import InvalidKey
from swarmdeploy.crypto.operator import public_key_of
from swarmdeploy.crypto.rejections import DecryptionFailed

VERSION = 1
BEGIN = "-----BEGIN SWARMDEPLOY ENCRYPTED KEY-----"
END = "-----END SWARMDEPLOY ENCRYPTED KEY-----"
SEED_BYTES = 32
_NONCE_BYTES = 24
_HEADERS = ("Version", "KDF", "KDF-Ops", "KDF-Mem", "Salt", "Key-Label", "Public-Key", "Comment")
_MAX_OPS = argon2id.OPSLIMIT_SENSITIVE * 4
_MAX_MEM = argon2id.MEMLIMIT_SENSITIVE


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost: ``ops`` passes over ``mem_bytes`` of memory."""

    ops: int = argon2id.OPSLIMIT_MODERATE
    mem_bytes: int = argon2id.MEMLIMIT_MODERATE


#: ~0.6 s and 256 MiB on the manager: the cost an attacker pays per guess.
DEFAULT_KDF = KdfParams()


@dataclass(frozen=True, slots=True)
class EncryptedKeyInfo:
    """The (authenticated, once decrypted) headers of an encrypted key file."""

    version: int
    kdf: str
    kdf_params: KdfParams
    salt: bytes
    key_label: str
    public_key: bytes
    comment: str


def _line_safe(text: str, what: str) -> str:
    if any(c in text for c in "\r\n") or not text.isprintable():
        raise ValueError(f"the {what} must be printable text on one line")
    return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _armor(info: EncryptedKeyInfo, seed: bytes, key: bytes) -> str:
    if len(seed) != SEED_BYTES:
        raise InvalidKey("an Ed25519 seed has 32 bytes")
    values = (
        str(info.version),
        info.kdf,
        str(info.kdf_params.ops),
        str(info.kdf_params.mem_bytes),
        _b64(info.salt),
        _line_safe(info.key_label, "key label"),
        _b64(info.public_key),
        _line_safe(info.comment, "comment"),
    )
    header = "\n".join(
        f"{name}: {value}" if value else f"{name}:"  # no trailing blanks for editors to eat
        for name, value in zip(_HEADERS, values, strict=True)
    )
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(seed, header.encode(), nonce, key)
    body = _b64(nonce + sealed)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([BEGIN, header, "", *lines, END]) + "\n"


def encrypt_with_passphrase(
    seed: bytes, passphrase: str, *, comment: str = "", kdf: KdfParams = DEFAULT_KDF
) -> str:
    """Armored text of ``seed`` encrypted under an Argon2id key from ``passphrase``.

    Raises :class:`ValueError` for an empty passphrase or a multi-line comment.
    """
    if not passphrase:
        raise ValueError("the passphrase must not be empty")
    salt = secrets.token_bytes(argon2id.SALTBYTES)
    info = EncryptedKeyInfo(VERSION, "argon2id", kdf, salt, "", public_key_of(seed), comment)
    return _armor(info, seed, _derive(passphrase, info))


def encrypt_with_key(seed: bytes, key: bytes, *, key_label: str, comment: str = "") -> str:
    """Armored text of ``seed`` encrypted under a 32-byte secret-store ``key`` named
    ``key_label`` (the label is stored so the right key can be fetched to decrypt)."""
    if len(key) != sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES:
        raise ValueError("a secret-store key has 32 bytes")
    if not key_label:
        raise ValueError("a secret-store key needs a label")
    info = EncryptedKeyInfo(
        VERSION, "none", KdfParams(0, 0), b"", key_label, public_key_of(seed), comment
    )
    return _armor(info, seed, key)


def _derive(passphrase: str, info: EncryptedKeyInfo) -> bytes:
    params = info.kdf_params
    return bytes(
        argon2id.kdf(
            SEED_BYTES,
            passphrase.encode("utf-8"),
            info.salt,
            opslimit=params.ops,
            memlimit=params.mem_bytes,
        )
    )


def _split(text: str) -> tuple[list[str], bytes]:
    lines = [line.rstrip("\r") for line in text.strip().splitlines()]
    if len(lines) < 4 or lines[0] != BEGIN or lines[-1] != END:
        raise InvalidKey("not a swarmdeploy encrypted key (missing BEGIN/END lines)")
    try:
        blank = lines.index("")
    except ValueError:
        raise InvalidKey("the encrypted key has no blank line after its headers") from None
    try:
        body = base64.b64decode("".join(lines[blank + 1 : -1]), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("the encrypted key body is not base64") from None
    return lines[1:blank], body


def _parse_headers(header: list[str]) -> EncryptedKeyInfo:
    if len(header) != len(_HEADERS):
        raise InvalidKey(f"an encrypted key has the headers {', '.join(_HEADERS)}")
    values: list[str] = []
    for line, name in zip(header, _HEADERS, strict=True):
        prefix = f"{name}: "
        if not (line.startswith(prefix) or line == prefix.rstrip()):
            raise InvalidKey(f"expected the header {name!r}, found {line[:40]!r}")
        values.append(line[len(prefix) :])
    try:
        version, ops, mem = int(values[0]), int(values[2]), int(values[3])
        salt = base64.b64decode(values[4], validate=True)
        public = base64.b64decode(values[6], validate=True)
    except (ValueError, binascii.Error):
        raise InvalidKey("an encrypted key header has an invalid value") from None
    if version != VERSION:
        raise InvalidKey(f"unsupported encrypted key version {version} (this reads {VERSION})")
    info = EncryptedKeyInfo(
        version, values[1], KdfParams(ops, mem), salt, values[5], public, values[7]
    )
    _check_kdf(info)
    return info


def _check_kdf(info: EncryptedKeyInfo) -> None:
    params = info.kdf_params
    if info.kdf == "argon2id":
        ok = argon2id.OPSLIMIT_MIN <= params.ops <= _MAX_OPS
        ok = ok and argon2id.MEMLIMIT_MIN <= params.mem_bytes <= _MAX_MEM
        ok = ok and len(info.salt) == argon2id.SALTBYTES
    else:
        ok = info.kdf == "none" and bool(info.key_label)
    if not ok:
        raise InvalidKey(f"unsupported or out-of-range key derivation {info.kdf!r}")


def describe(text: str) -> EncryptedKeyInfo:
    """The headers of an encrypted key, without decrypting it (:class:`InvalidKey` if the
    text is not one). Headers are only authenticated by a successful decryption."""
    header, _ = _split(text)
    return _parse_headers(header)


def decrypt_seed(text: str, *, passphrase: str | None = None, key: bytes | None = None) -> bytes:
    """The 32-byte seed of an encrypted key, given the passphrase or the secret-store key.

    Raises :class:`InvalidKey` for text that is not an encrypted key (or a newer version),
    and :class:`DecryptionFailed` for a wrong passphrase or key, a file encrypted the other
    way, or any modified byte (headers included).
    """
    header, body = _split(text)
    info = _parse_headers(header)
    if info.kdf == "argon2id":
        if passphrase is None:
            raise DecryptionFailed("this key is encrypted with a passphrase")
        secret = _derive(passphrase, info)
    elif key is None:
        raise DecryptionFailed(
            f"this key is encrypted with the secret-store key {info.key_label!r}"
        )
    else:
        secret = key
    if len(body) <= _NONCE_BYTES:
        raise InvalidKey("the encrypted key body is truncated")
    nonce, sealed = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
    aad = "\n".join(header).encode()
    try:
        seed = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, aad, nonce, secret)
    except (SodiumError, TypeError, ValueError):
        raise DecryptionFailed("wrong passphrase or key, or the key file was modified") from None
    if len(seed) != SEED_BYTES or public_key_of(seed) != info.public_key:
        raise DecryptionFailed("the decrypted key does not match its public key")
    return bytes(seed)
