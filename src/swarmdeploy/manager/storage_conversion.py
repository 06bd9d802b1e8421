"""``swarmdeploy manager --encrypt-storage --migrate``: encrypt a plaintext data directory in
place (docs/storage.md, "Encryption at rest"; the keys and the marker are
:mod:`.storage_encryption`'s)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import sqlite3
from pathlib import Path

from swarmdeploy.crypto.keyenc import DEFAULT_KDF, KdfParams
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore
from swarmdeploy.manager.storage_encryption import (
    StorageLayout,
    blob_folders,
    derive_keys,
    has_plain_data,
    is_plain_blob,
    new_marker,
    read_marker,
    write_marker,
)
from swarmdeploy.storage import sqlcipher


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What :func:`convert` did."""

    backup: Path | None
    database_converted: bool
    blobs_converted: int


def _backup_blobs(layout: StorageLayout, backup: Path) -> None:
    for folder in blob_folders(layout):
        for path in folder.iterdir():
            if not is_plain_blob(path):
                continue
            target = backup / "blobs" / folder.name / path.name
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                os.link(path, target)  # the encrypted copy replaces the path, not this inode
            except OSError:
                shutil.copy2(path, target)


def _backup_database(source: Path, target: Path) -> None:
    plain, copy = sqlite3.connect(source), sqlite3.connect(target)
    try:
        plain.backup(copy)  # a consistent copy, WAL included
    finally:
        copy.close()
        plain.close()
    target.chmod(0o600)


def convert(
    layout: StorageLayout,
    passphrase_file: Path | None,
    *,
    now: dt.datetime,
    kdf: KdfParams = DEFAULT_KDF,
) -> Conversion:
    """Encrypt a plaintext data directory in place (``--encrypt-storage --migrate``).

    Order: the marker (so the key of a conversion that is interrupted stays the same), the
    backup of everything still plaintext (``DATA_DIR/backup-before-encryption-<time>/``:
    a copy of the database by SQLite's backup API, hard links of the blob files), then the
    database (``sqlcipher_export`` into a new file that replaces the old one) and the blobs
    (each replaced atomically). Running it again finishes an interrupted conversion and
    does nothing on an encrypted data directory. Blocking; the manager must not be running
    (the caller holds the data directory's lock).
    """
    marker = read_marker(layout)
    if marker is None:
        marker = new_marker(passphrase_file, kdf)
        keys = derive_keys(layout, marker, passphrase_file)
        write_marker(layout, marker)
    else:
        keys = derive_keys(layout, marker, passphrase_file)
    plain_db = (
        layout.sqlite_path is not None and sqlcipher.file_state(layout.sqlite_path) == "plain"
    )
    if not has_plain_data(layout):
        return Conversion(None, False, 0)
    backup = layout.data_dir / f"backup-before-encryption-{now:%Y%m%dT%H%M%SZ}"
    backup.mkdir(mode=0o700)
    _backup_blobs(layout, backup)
    if plain_db:
        assert layout.sqlite_path is not None
        _backup_database(layout.sqlite_path, backup / layout.sqlite_path.name)
        _encrypt_database(layout.sqlite_path, keys.database)
    store = EncryptedFileBlobStore(layout.blobs, keys.blobs)
    return Conversion(backup, plain_db, store.encrypt_plain_blobs())


def _encrypt_database(path: Path, key: bytes) -> None:
    staging = path.with_name(path.name + ".encrypting")
    staging.unlink(missing_ok=True)  # left by an interrupted conversion
    sqlcipher.export_encrypted(path, staging, key)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    os.replace(staging, path)
