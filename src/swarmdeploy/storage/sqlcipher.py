"""SQLite encrypted at rest with SQLCipher 4 (``sqlcipher3``, the ``encryption`` extra).

SQLAlchemy's aiosqlite dialect is used unchanged, with two substitutions (docs/adr
"storage encryption"): its DB-API adapter wraps ``sqlcipher3.dbapi2`` instead of ``sqlite3``
-- so SQLAlchemy recognises SQLCipher's exception classes and wraps them as usual
(``IntegrityError`` and friends) -- and each connection is an :class:`aiosqlite.Connection`
around ``sqlcipher3.dbapi2.connect`` whose first statement is ``PRAGMA key``.

The key is 32 raw bytes (``PRAGMA key = "x'...'"``): SQLCipher skips its PBKDF2 step, which
would otherwise cost every new connection a quarter of a second; the caller derives the key
(``manager.storage_keys``). A wrong key is noticed by the first read of the schema, which
SQLCipher answers with "file is not a database": :func:`check_key` turns that into
:class:`KeyRejected` before the engine exists.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import aiosqlite

from swarmdeploy.storage.errors import KeyRejected, StorageUnavailable

KEY_BYTES = 32
#: Page cache per encrypted connection, KiB (filled only as pages are read).
CACHE_KIB = 64 * 1024
#: The first 16 bytes of every plaintext SQLite 3 file.
PLAIN_HEADER = b"SQLite format 3\x00"


def dbapi() -> ModuleType:
    """``sqlcipher3.dbapi2``; :class:`StorageUnavailable` naming the extra if it is missing."""
    try:
        from sqlcipher3 import dbapi2  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise StorageUnavailable(
            "encrypted storage needs SQLCipher: pip install 'swarmdeploy[encryption]'"
        ) from None
    module: ModuleType = dbapi2
    return module


def key_pragma(key: bytes) -> str:
    """``PRAGMA key`` with ``key`` as a raw key (no key derivation in SQLCipher)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"the database key must be {KEY_BYTES} bytes")
    return f"PRAGMA key = \"x'{key.hex()}'\""


def file_state(path: Path) -> str:
    """``"absent"`` (no file or an empty one), ``"plain"`` (a plaintext SQLite file) or
    ``"encrypted"`` (anything else: SQLCipher leaves no readable header)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(PLAIN_HEADER))
    except FileNotFoundError:
        return "absent"
    if not head:
        return "absent"
    return "plain" if head == PLAIN_HEADER else "encrypted"


def connect(path: Path, key: bytes, *, timeout_s: float = 10.0) -> Any:
    """A blocking ``sqlcipher3`` connection to ``path`` with ``key`` applied."""
    connection = dbapi().connect(str(path), timeout=timeout_s, check_same_thread=False)
    # A wrong key is reported once, as KeyRejected; SQLCipher would also log to stderr.
    connection.execute("PRAGMA cipher_log_level = NONE")
    connection.execute(key_pragma(key))
    # SQLCipher decrypts (and checks the HMAC of) every page it reads into its page cache;
    # with SQLite's default 2 MB cache a query over 10% of a million log lines decrypted the
    # same pages again and again (5x slower than plaintext; docs/storage.md).
    connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    return connection


def check_key(path: Path, key: bytes) -> None:
    """Raise :class:`KeyRejected` unless ``key`` opens the database at ``path`` (blocking;
    an absent file is fine: it will be created encrypted)."""
    if file_state(path) == "absent":
        return
    module = dbapi()
    connection = None
    try:
        connection = connect(path, key)  # its cache_size pragma may be the first read
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except module.DatabaseError as exc:
        raise KeyRejected(
            f"cannot decrypt {path}: wrong key, or not a swarmdeploy database ({exc})"
        ) from None
    finally:
        if connection is not None:
            connection.close()


def async_creator(
    path: Path, key: bytes, *, timeout_s: float
) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    """``async_creator`` for ``create_async_engine``: aiosqlite around SQLCipher."""

    def _connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = connect(path, key, timeout_s=timeout_s)
        return connection

    async def _create() -> aiosqlite.Connection:
        return await aiosqlite.Connection(_connector, iter_chunk_size=64)

    return _create


_ERRORS = ("DatabaseError", "Error", "IntegrityError", "NotSupportedError",
           "OperationalError", "ProgrammingError")  # fmt: skip


def adapted_dbapi() -> Any:
    """SQLAlchemy's aiosqlite DB-API adapter over ``sqlcipher3.dbapi2``.

    The adapter takes its exception classes from the module it is given as ``aiosqlite``
    (which re-exports ``sqlite3``'s); it gets a stand-in with SQLCipher's classes, so that
    SQLAlchemy wraps SQLCipher's errors (``IntegrityError`` -> ``sa.exc.IntegrityError``)
    exactly as it wraps ``sqlite3``'s.
    """
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

    driver = dbapi()
    stand_in = ModuleType("aiosqlite_over_sqlcipher")
    stand_in.Connection = aiosqlite.Connection  # type: ignore[attr-defined]
    stand_in.connect = aiosqlite.connect  # type: ignore[attr-defined]
    stand_in.sqlite_version = driver.sqlite_version  # type: ignore[attr-defined]
    stand_in.sqlite_version_info = driver.sqlite_version_info  # type: ignore[attr-defined]
    for name in _ERRORS:
        setattr(stand_in, name, getattr(driver, name))
    return AsyncAdapt_aiosqlite_dbapi(stand_in, driver)


def export_encrypted(plain: Path, out: Path, key: bytes) -> None:
    """Write an encrypted copy of the plaintext database ``plain`` to ``out`` (must not
    exist) with SQLCipher's ``sqlcipher_export`` (schema, rows, FTS5 indexes, user
    version). Blocking; the caller swaps the files."""
    if out.exists():
        raise FileExistsError(f"{out} exists already")
    module = dbapi()
    connection = module.connect(str(plain), isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        connection.execute(f"ATTACH DATABASE ? AS encrypted KEY \"x'{key.hex()}'\"", (str(out),))
        connection.execute("SELECT sqlcipher_export('encrypted')")
        connection.execute(f"PRAGMA encrypted.user_version = {int(version)}")
        connection.execute("DETACH DATABASE encrypted")
    finally:
        connection.close()
    with out.open("rb") as fh:
        os.fsync(fh.fileno())
