"""Storage encrypted at rest: the storage key, the data directory's encryption marker, and
the in-place conversion of a plaintext data directory (docs/storage.md, "Encryption at rest").

``DATA_DIR/storage-encryption.json`` (mode 0600) records that the data directory is
encrypted, where its key comes from and a check value of the key -- never the key::

    {"version": 1, "key_source": "secret.key" | "passphrase",
     "kdf": {"name": "argon2id", "salt": HEX, "ops": N, "mem_bytes": N},   # passphrase only
     "check": HEX}

The 32-byte master key is HMAC-SHA256(``secret.key``, context) or Argon2id of the
``--storage-passphrase-file`` passphrase; the SQLCipher key and the blob key are separate
HMAC-SHA256 derivations of it. With the marker present, a wrong key is detected by the check
value before anything is opened; a data directory with the marker refuses to start without
``--encrypt-storage``, and one with plaintext data but no marker refuses to start with it
until ``--migrate`` has converted it. Every refusal is :class:`StorageEncryptionError` with
a one-line message. The conversion of a plaintext data directory is :mod:`.storage_conversion`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

from nacl.pwhash import argon2id

from swarmdeploy.crypto.keyenc import DEFAULT_KDF, KdfParams
from swarmdeploy.manager.keystore import (
    KeystoreError,
    load_secret,
    read_passphrase_file,
    write_new_file,
)
from swarmdeploy.manager.services.blob_cipher import MAGIC
from swarmdeploy.manager.services.blobs import _DIGEST_RE, BlobStore, FileBlobStore
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore
from swarmdeploy.storage import sqlcipher
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import StorageError
from swarmdeploy.storage.factory import normalize_url, open_storage

log = logging.getLogger(__name__)

MARKER = "storage-encryption.json"
_CONTEXT = b"swarmdeploy storage key v1"
_SQLITE_URL = "sqlite+aiosqlite:///"


class StorageEncryptionError(RuntimeError):
    """The data directory's encryption and the options do not fit (or the key is wrong)."""


@dataclasses.dataclass(frozen=True)
class StorageKeys:
    """The keys of the encrypted database and blob store."""

    database: bytes = dataclasses.field(repr=False)
    blobs: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class StorageLayout:
    """Where the data directory keeps what is encrypted: the SQLite file (``None`` when the
    database is PostgreSQL) and the blob directory."""

    data_dir: Path
    sqlite_path: Path | None

    @property
    def blobs(self) -> Path:
        """The blob store's directory."""
        return self.data_dir / "blobs"

    @property
    def marker(self) -> Path:
        """The encryption marker."""
        return self.data_dir / MARKER


def _derive(master: bytes, label: bytes) -> bytes:
    return hmac.new(master, _CONTEXT + b" " + label, hashlib.sha256).digest()


def _master(data_dir: Path, marker: dict[str, Any], passphrase_file: Path | None) -> bytes:
    if marker["key_source"] == "secret.key":
        return _derive(load_secret(data_dir), b"master")
    kdf = marker["kdf"]
    assert passphrase_file is not None
    passphrase = read_passphrase_file(passphrase_file).encode()
    key: bytes = argon2id.kdf(
        32, passphrase, bytes.fromhex(kdf["salt"]), opslimit=kdf["ops"], memlimit=kdf["mem_bytes"]
    )
    return key


def new_marker(passphrase_file: Path | None, kdf: KdfParams) -> dict[str, Any]:
    """The marker of a data directory being encrypted now (its check value is added by
    :func:`derive_keys`)."""
    if passphrase_file is None:
        return {"version": 1, "key_source": "secret.key"}
    salt = os.urandom(argon2id.SALTBYTES).hex()
    return {
        "version": 1,
        "key_source": "passphrase",
        "kdf": {"name": "argon2id", "salt": salt, "ops": kdf.ops, "mem_bytes": kdf.mem_bytes},
    }


def read_marker(layout: StorageLayout) -> dict[str, Any] | None:
    """The marker's content, or ``None`` if the data directory is not encrypted."""
    try:
        marker: dict[str, Any] = json.loads(layout.marker.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageEncryptionError(f"{layout.marker} is unreadable: {exc}") from None
    if not isinstance(marker, dict) or marker.get("version") != 1 or "check" not in marker:
        raise StorageEncryptionError(f"{layout.marker} is not a version 1 encryption marker")
    return marker


def derive_keys(
    layout: StorageLayout, marker: dict[str, Any], passphrase_file: Path | None
) -> StorageKeys:
    """The keys of the data directory described by ``marker``; checked against its check
    value (which a new marker gets here). Raises :class:`StorageEncryptionError`."""
    source = marker.get("key_source")
    if source == "passphrase" and passphrase_file is None:
        raise StorageEncryptionError(
            f"{layout.data_dir} is encrypted with a passphrase: give --storage-passphrase-file"
        )
    if source == "secret.key" and passphrase_file is not None:
        raise StorageEncryptionError(
            f"{layout.data_dir} is encrypted with a key from secret.key, not a passphrase:"
            " leave out --storage-passphrase-file"
        )
    if source not in ("secret.key", "passphrase"):
        raise StorageEncryptionError(f"{layout.marker}: unknown key_source {source!r}")
    try:
        master = _master(layout.data_dir, marker, passphrase_file)
    except KeystoreError as exc:
        raise StorageEncryptionError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageEncryptionError(f"{layout.marker} is damaged ({exc!r})") from None
    check = _derive(master, b"check").hex()
    if not hmac.compare_digest(check, marker.setdefault("check", check)):
        raise StorageEncryptionError(
            f"wrong storage key for {layout.data_dir}: "
            + ("the passphrase differs" if source == "passphrase" else "secret.key differs")
            + " from the one it was encrypted with"
        )
    return StorageKeys(database=_derive(master, b"database"), blobs=_derive(master, b"blobs"))


def has_plain_data(layout: StorageLayout) -> bool:
    """Whether the SQLite file or any blob file is still plaintext."""
    if layout.sqlite_path is not None and sqlcipher.file_state(layout.sqlite_path) == "plain":
        return True
    return any(is_plain_blob(path) for folder in blob_folders(layout) for path in folder.iterdir())


def is_plain_blob(path: Path) -> bool:
    """Whether ``path`` is a blob file (named by its digest) that is not encrypted."""
    if not _DIGEST_RE.match(path.name):
        return False
    with path.open("rb") as fh:
        return fh.read(len(MAGIC)) != MAGIC


def blob_folders(layout: StorageLayout) -> list[Path]:
    """The blob store's two-hex-digit folders."""
    if not layout.blobs.is_dir():
        return []
    return [p for p in layout.blobs.iterdir() if len(p.name) == 2 and p.is_dir()]


def write_marker(layout: StorageLayout, marker: dict[str, Any]) -> None:
    """Write the marker (mode 0600; never over an existing one)."""
    write_new_file(layout.marker, (json.dumps(marker, indent=2) + "\n").encode(), mode=0o600)


def check_plain(layout: StorageLayout) -> None:
    """Refuse to start without encryption a data directory that is encrypted."""
    if read_marker(layout) is not None:
        raise StorageEncryptionError(
            f"{layout.data_dir} is encrypted: start with --encrypt-storage"
            " (and its --storage-passphrase-file, if it has one)"
        )
    if layout.sqlite_path is not None and sqlcipher.file_state(layout.sqlite_path) == "encrypted":
        raise StorageEncryptionError(
            f"{layout.sqlite_path} is encrypted or not a SQLite database: start with"
            " --encrypt-storage"
        )


def open_keys(
    layout: StorageLayout, passphrase_file: Path | None, *, kdf: KdfParams = DEFAULT_KDF
) -> StorageKeys:
    """The storage keys for starting the manager with ``--encrypt-storage``: checked against
    the marker (and the SQLite file), or -- for a data directory without data yet -- newly
    set up. Raises :class:`StorageEncryptionError`."""
    marker = read_marker(layout)
    new = marker is None
    if marker is None:
        if has_plain_data(layout):
            raise StorageEncryptionError(
                f"{layout.data_dir} holds unencrypted data: convert it with"
                " --encrypt-storage --migrate (a backup is kept)"
            )
        marker = new_marker(passphrase_file, kdf)
    keys = derive_keys(layout, marker, passphrase_file)
    if layout.sqlite_path is not None:
        if sqlcipher.file_state(layout.sqlite_path) == "plain":
            raise StorageEncryptionError(
                f"{layout.sqlite_path} is not encrypted yet: finish the conversion with"
                " --encrypt-storage --migrate"
            )
        try:
            sqlcipher.check_key(layout.sqlite_path, keys.database)
        except StorageError as exc:  # KeyRejected, or SQLCipher is not installed
            raise StorageEncryptionError(str(exc)) from None
    if new:
        write_marker(layout, marker)
    return keys


def layout_of(data_dir: Path, database_url: str) -> StorageLayout:
    """The layout of a manager with ``data_dir`` and the (normalised) ``database_url``."""
    url = normalize_url(database_url)
    sqlite_path = Path(url[len(_SQLITE_URL) :]) if url.startswith(_SQLITE_URL) else None
    return StorageLayout(data_dir, sqlite_path)


def open_stores(
    layout: StorageLayout, database_url: str, keys: StorageKeys | None
) -> tuple[Storage, BlobStore]:
    """The (unopened) storage and the blob store of a manager: encrypted with ``keys``
    (the database only if it is SQLite), plaintext without. A needed schema migration runs
    in a child process (``storage.migrate``): the manager never carries alembic."""
    if keys is None:
        return open_storage(database_url, migrate_in_child=True), FileBlobStore(layout.blobs)
    sqlite_key = keys.database if layout.sqlite_path is not None else None
    if sqlite_key is None:
        log.info("blobs encrypted at rest; the PostgreSQL server protects the database's files")
    return (
        open_storage(database_url, sqlite_key=sqlite_key, migrate_in_child=True),
        EncryptedFileBlobStore(layout.blobs, keys.blobs),
    )
