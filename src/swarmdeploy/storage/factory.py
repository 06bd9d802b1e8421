"""``open_storage(url)``: pick and construct the backend named by a database URL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from swarmdeploy.storage.base import Storage

if TYPE_CHECKING:
    from swarmdeploy.storage.sql import SqlStorage

_SQLITE_PREFIXES = ("sqlite+aiosqlite://", "sqlite://")
_POSTGRES_PREFIXES = ("postgresql+asyncpg://", "postgresql://", "postgres://")


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL for ``url`` (``memory://`` stays as is).

    Accepted: ``memory://`` (a scratch SQLite database deleted on close, for tests);
    ``sqlite+aiosqlite:///abs/path.db``, ``sqlite:///path`` or a plain file path ending in
    ``.db`` (made absolute); ``postgresql://...``,
    ``postgresql+asyncpg://...`` or ``postgres://...``. Anything else raises
    :class:`ValueError`.
    """
    if url == "memory://":
        return url
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if not path.startswith("/") or path in ("/", "/:memory:"):
                raise ValueError(f"SQLite URL needs a file path (sqlite:///path.db): {url!r}")
            return f"sqlite+aiosqlite:///{os.path.abspath(path[1:])}"
    for prefix in _POSTGRES_PREFIXES:
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if "://" not in url and url.endswith(".db"):
        return f"sqlite+aiosqlite:///{os.path.abspath(url)}"
    raise ValueError(
        f"unknown database URL {url!r}: use memory://, sqlite:///path.db, a path ending in .db"
        " or postgresql://user@host/db"
    )


def open_storage(
    url: str, *, sqlite_key: bytes | None = None, migrate_in_child: bool = False
) -> Storage:
    """A backend for ``url`` (see :func:`normalize_url`), not opened yet: the caller awaits
    ``open()`` (which runs the migrations) and later ``close()``. ``sqlite_key`` (32 bytes)
    keeps a SQLite file encrypted with SQLCipher; other backends refuse it. With
    ``migrate_in_child`` a file or server database is migrated by a child process
    (``storage.migrate``)."""
    normalized = normalize_url(url)
    if sqlite_key is not None and not normalized.startswith("sqlite"):
        raise ValueError("a database encryption key applies to SQLite only")
    if normalized == "memory://":
        from swarmdeploy.storage.sqlite import ScratchSqliteStorage

        return ScratchSqliteStorage()
    storage: SqlStorage
    if normalized.startswith("sqlite"):
        from swarmdeploy.storage.sqlite import SqliteStorage

        storage = SqliteStorage(normalized, key=sqlite_key)
    else:
        from swarmdeploy.storage.postgres import PostgresStorage

        storage = PostgresStorage(normalized)
    storage.migrate_in_child = migrate_in_child
    return storage
