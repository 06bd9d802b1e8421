"""Backends for the storage tests: every contract test runs on SQLite (plain and encrypted with
SQLCipher) and PostgreSQL. ``memory://`` is SQLite on a scratch file (test_sqlite.py).

PostgreSQL tests share one database per session (creating a database costs ~0.3 s); each test
starts from empty tables (``TRUNCATE`` of every table but ``alembic_version``). Tests that need a
brand-new database (migrations) use ``pg_database_url`` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from swarmdeploy.storage import Storage
from swarmdeploy.storage.factory import open_storage

BACKENDS = [
    "sqlite",
    "sqlite-encrypted",
    pytest.param("postgresql", marks=pytest.mark.postgres),
]
#: The SQLCipher key of the ``sqlite-encrypted`` backend.
TEST_KEY = bytes(range(32))


async def empty_pg_tables(url: str) -> None:
    """Delete every row of every table of the database at ``url`` (schema stays)."""
    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        )
        if names:
            tables = ", ".join(f'"{r["tablename"]}"' for r in names)
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
async def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}"
    if request.param == "sqlite-encrypted":
        return f"sqlite+aiosqlite:///{tmp_path / 'encrypted.db'}"
    url: str = request.getfixturevalue("pg_url")
    await empty_pg_tables(url)
    return url


def storage_key(url: str) -> bytes | None:
    """The SQLCipher key of the database at ``url`` (``None``: plaintext)."""
    return TEST_KEY if url.endswith("/encrypted.db") else None


@pytest.fixture
def open_backend(storage_url: str) -> Callable[[], Storage]:
    """Makes a new (unopened) storage object for the database at ``storage_url``."""
    return lambda: open_storage(storage_url, sqlite_key=storage_key(storage_url))


@pytest.fixture
async def storage(open_backend: Callable[[], Storage]) -> AsyncIterator[Storage]:
    """An open storage of each backend, closed after the test."""
    backend = open_backend()
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def sql_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """An open, empty SQL backend (a SQLite file, or the session's PostgreSQL database), for
    tests of what the SQL backends do beyond the contract."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        await empty_pg_tables(url)
    backend = open_storage(url)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
