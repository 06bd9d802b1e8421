"""SQLite specifics: connection settings, busy database, unusable file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from swarmdeploy.storage import StorageUnavailable
from swarmdeploy.storage.sqlite import SqliteStorage

from .helpers import line


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
