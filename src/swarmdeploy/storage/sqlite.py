"""SQLite backend (embedded default): aiosqlite, WAL, FTS5; optionally SQLCipher.

Each connection is set up with ``journal_mode=WAL`` (readers never block the writer),
``synchronous=NORMAL`` (durable at checkpoints, safe against corruption), ``foreign_keys=ON``
(cascades) and a busy timeout, so that concurrent writers wait instead of failing. Full-text
search goes through the FTS5 tables ``logs_fts`` and ``tasks_fts`` created by the migration and
kept in sync by triggers. :class:`ScratchSqliteStorage` (``memory://``) is the same backend on a
private throw-away file. With a ``key`` the file is encrypted by SQLCipher
(:mod:`.sqlcipher`); a file encrypted with another key, or one whose encryption does not match
``key``, fails :meth:`SqliteStorage.open` with :class:`KeyRejected`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from swarmdeploy.storage import sqlcipher
from swarmdeploy.storage.common import decode_json
from swarmdeploy.storage.errors import KeyRejected, StorageUnavailable
from swarmdeploy.storage.sql import SqlStorage
from swarmdeploy.storage.tables import logs, tasks

#: The connection pool: SQLite has one writer at a time, so two pooled connections (one
#: writing, one reading) and three more under a burst of reads are enough. Each aiosqlite
#: connection is a thread with its own page cache and its own malloc arena; handing out the
#: most recently used one first (LIFO) keeps the others idle. Against SQLAlchemy's default
#: (5 + 10, first in first out) interleaved runs showed no difference in CPU or memory at
#: 1,000 agents (docs/performance.md, "fourth round"): fewer threads for the same work.
POOL: dict[str, Any] = {"pool_size": 2, "max_overflow": 3, "pool_use_lifo": True}

_logs_fts = sa.table("logs_fts", sa.column("rowid", sa.Integer), sa.column("output", sa.Text))
_tasks_fts = sa.table("tasks_fts", sa.column("task_id", sa.Text), sa.column("description", sa.Text))


def _fts5_query(words: Sequence[str]) -> str:
    # Words are letters and digits only (storage.common.fts_words); quoting each makes it a
    # plain term, and FTS5 ANDs space-separated terms.
    return " ".join(f'"{word}"' for word in words)


class SqliteStorage(SqlStorage):
    """:class:`Storage` in one SQLite file (``sqlite+aiosqlite:///path``)."""

    serialize_writes = True

    def __init__(self, url: str, *, busy_timeout_s: float = 10.0, key: bytes | None = None) -> None:
        """``key``: 32 bytes to keep the file encrypted with SQLCipher (``storage.sqlcipher``);
        ``None`` for a plaintext file."""
        super().__init__(url)
        self._busy_timeout_s = busy_timeout_s
        self._key = key

    async def open(self) -> None:
        """Check that the database's directory exists, then open as every SQL backend does."""
        # Checked here because a failed aiosqlite connect leaves its worker thread reporting
        # to the event loop after the call returned.
        path = sa.engine.make_url(self._url).database or ""
        if not await asyncio.to_thread(os.path.isdir, os.path.dirname(path) or "."):
            raise StorageUnavailable(f"directory of the SQLite database {path!r} does not exist")
        await asyncio.to_thread(self._check_encryption, Path(path))
        await super().open()

    def _check_encryption(self, path: Path) -> None:
        state = sqlcipher.file_state(path)
        if self._key is None:
            if state == "encrypted":
                raise KeyRejected(f"{path} is encrypted (or not a SQLite database): it needs a key")
            return
        if state == "plain":
            raise KeyRejected(f"{path} is not encrypted: convert it first (docs/storage.md)")
        sqlcipher.check_key(path, self._key)

    def _make_engine(self) -> AsyncEngine:
        if self._key is None:
            engine = create_async_engine(
                self._url,
                connect_args={"timeout": self._busy_timeout_s},
                json_deserializer=decode_json,
                **POOL,
            )
        else:
            path = Path(sa.engine.make_url(self._url).database or "")
            engine = create_async_engine(
                self._url,
                module=sqlcipher.adapted_dbapi(),
                json_deserializer=decode_json,
                async_creator=sqlcipher.async_creator(
                    path, self._key, timeout_s=self._busy_timeout_s
                ),
                **POOL,
            )
        pragmas = (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}",
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in pragmas:
                cursor.execute(pragma)
            cursor.close()

        return engine

    def _before_migrate(self, connection: Connection) -> None:
        # One SQLite file has one manager process; nothing to coordinate.
        del connection

    def _sqlite_key(self) -> bytes | None:
        return self._key

    def _insert_ignore(self, table: sa.Table) -> Any:
        return sqlite.insert(table).on_conflict_do_nothing()

    def _log_text_match(self, words: Sequence[str]) -> sa.ColumnElement[bool]:
        matching = sa.select(_logs_fts.c.rowid).where(
            _logs_fts.c.output.bool_op("MATCH")(_fts5_query(words))
        )
        return logs.c.id.in_(matching)

    def _task_text_match(self, words: Sequence[str]) -> sa.ColumnElement[bool]:
        matching = sa.select(_tasks_fts.c.task_id).where(
            _tasks_fts.c.description.bool_op("MATCH")(_fts5_query(words))
        )
        return tasks.c.id.in_(matching)


#: Where scratch databases go when it is there: a RAM file system, so nothing reaches a disk.
#: Safe as a parent: ``mkdtemp`` makes a fresh directory of mode 0700 with a random name in it.
_RAM_DIR = "/dev/shm"  # noqa: S108


def _scratch_parent() -> str | None:
    """The directory for scratch databases: :data:`_RAM_DIR` if usable, else the default
    temporary directory (``TMPDIR``)."""
    if os.path.isdir(_RAM_DIR) and os.access(_RAM_DIR, os.W_OK | os.X_OK):
        return _RAM_DIR
    return None


class ScratchSqliteStorage(SqliteStorage):
    """``memory://``: :class:`SqliteStorage` on a private database that lives from ``open()``
    to ``close()``, for tests of manager logic.

    The file sits in a new temporary directory (under ``/dev/shm`` where that exists, so it
    stays in RAM) and is deleted with it by ``close()`` -- or when the object is collected, if
    it never was closed. Unlike SQLite's ``:memory:``, a file gives every pooled connection
    the same database with WAL, so concurrency behaves exactly as with a real data dir.
    Opening again after ``close()`` starts from an empty database. Each one starts as a copy
    of a database migrated once per process (the migrations still run, finding nothing to do):
    11 ms of CPU instead of 48 ms per ``open()``.
    """

    #: The once-migrated database of this process (removed at exit).
    _template: ClassVar[Path | None] = None

    def __init__(self) -> None:
        """An unopened scratch database (nothing is created before ``open()``)."""
        super().__init__("memory://")
        self._scratch_dir: str | None = None
        self._cleanup: weakref.finalize[Any, Any] | None = None

    async def open(self) -> None:
        """Create the temporary directory and open a new database in it."""
        if self._scratch_dir is not None:
            return
        directory = await asyncio.to_thread(
            tempfile.mkdtemp, prefix="swarmdeploy-scratch-", dir=_scratch_parent()
        )
        self._scratch_dir = directory
        self._cleanup = weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
        path = Path(directory) / "manager.db"
        self._url = f"sqlite+aiosqlite:///{path}"
        try:
            await asyncio.to_thread(shutil.copyfile, await _migrated_template(), path)
            await super().open()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the database and delete its directory. Idempotent."""
        await super().close()
        if self._cleanup is not None:
            await asyncio.to_thread(self._cleanup)
        self._cleanup = None
        self._scratch_dir = None


async def _migrated_template() -> Path:
    """A database file migrated to head, made once per process and copied by each scratch
    database (closing its only connection checkpoints the WAL into the file)."""
    template = ScratchSqliteStorage._template
    if template is None or not await asyncio.to_thread(template.is_file):
        directory = await asyncio.to_thread(
            tempfile.mkdtemp, prefix="swarmdeploy-scratch-template-", dir=_scratch_parent()
        )
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        template = Path(directory) / "template.db"
        storage = SqliteStorage(f"sqlite+aiosqlite:///{template}")
        await storage.open()
        await storage.close()
        ScratchSqliteStorage._template = template
    return template
