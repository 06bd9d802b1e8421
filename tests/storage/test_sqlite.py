"""SQLite specifics: connection settings, busy database, unusable file, ``memory://``."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from swarmdeploy.storage import StorageUnavailable
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.sqlite import ScratchSqliteStorage, SqliteStorage

from .helpers import add_target, line, target


@pytest.fixture
async def sqlite_storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    backend = SqliteStorage(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", busy_timeout_s=0.2)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_connections_use_wal_normal_sync_and_foreign_keys(
    sqlite_storage: SqliteStorage,
) -> None:
    async with sqlite_storage._tx() as conn:
        settings = {
            name: (await conn.execute(sa.text(f"PRAGMA {name}"))).scalar_one()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert settings == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 200,
    }


async def test_write_while_another_process_holds_the_lock_raises_unavailable(
    sqlite_storage: SqliteStorage, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable):
            await sqlite_storage.add_logs([line("blocked")])
        other.execute("ROLLBACK")
        assert await sqlite_storage.add_logs([line("free")]) == 1
    finally:
        other.close()


async def test_open_in_missing_directory_raises_unavailable(tmp_path: Path) -> None:
    backend = SqliteStorage(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'm.db'}")
    with pytest.raises(StorageUnavailable):
        await backend.open()
    with pytest.raises(StorageUnavailable):
        await backend.ping()


async def test_max_log_seq_is_an_index_lookup(sqlite_storage: SqliteStorage) -> None:
    await sqlite_storage.add_logs([line(f"l{i}", seq=i) for i in range(1, 50)])
    async with sqlite_storage._tx() as conn:
        plan = (
            await conn.execute(
                sa.text(
                    "EXPLAIN QUERY PLAN SELECT seq FROM logs WHERE target = 't1'"
                    " AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
                )
            )
        ).all()
    details = " ".join(str(r[-1]) for r in plan)
    assert "USING COVERING INDEX uq_logs_target_seq" in details and "TEMP B-TREE" not in details
    assert await sqlite_storage.max_log_seq("t1") == 49


# -- memory:// (a scratch SQLite database) ------------------------------------------------------


def _database_file(storage: ScratchSqliteStorage) -> Path:
    return Path(sa.engine.make_url(storage._url).database or "")


async def test_memory_url_is_sqlite_on_a_private_file_deleted_on_close() -> None:
    first, second = open_storage("memory://"), open_storage("memory://")
    assert isinstance(first, ScratchSqliteStorage) and isinstance(second, ScratchSqliteStorage)
    await first.open()
    await second.open()
    try:
        files = [_database_file(first), _database_file(second)]
        assert files[0] != files[1] and all(f.is_file() for f in files)
        await add_target(first, target("t1"))
        assert await first.get_target("t1") is not None
        assert await second.get_target("t1") is None  # each object has its own database
        async with first._tx() as conn:
            journal = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
        assert journal == "wal"
    finally:
        await first.close()
        await second.close()
    assert not any(f.parent.exists() for f in files)
    with pytest.raises(StorageUnavailable):
        await first.ping()


async def test_memory_database_reopened_after_close_starts_empty() -> None:
    storage = ScratchSqliteStorage()
    await storage.open()
    await add_target(storage, target("t1"))
    await storage.close()
    await storage.open()
    try:
        assert await storage.get_target("t1") is None
    finally:
        await storage.close()


async def test_memory_database_never_closed_is_deleted_when_collected() -> None:
    storage = ScratchSqliteStorage()
    await storage.open()
    directory = _database_file(storage).parent
    assert directory.is_dir()
    engine = storage._engine
    assert engine is not None
    await engine.dispose()  # what the collector cannot do for us
    del storage, engine
    gc.collect()
    assert not directory.exists()
