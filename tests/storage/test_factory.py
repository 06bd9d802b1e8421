"""``open_storage`` picks the backend from the database URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmdeploy.storage.factory import normalize_url, open_storage
from swarmdeploy.storage.postgres import PostgresStorage
from swarmdeploy.storage.sqlite import ScratchSqliteStorage, SqliteStorage


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://", "memory://"),
        ("sqlite+aiosqlite:////var/lib/sd/m.db", "sqlite+aiosqlite:////var/lib/sd/m.db"),
        ("sqlite:////var/lib/sd/m.db", "sqlite+aiosqlite:////var/lib/sd/m.db"),
        ("/var/lib/sd/m.db", "sqlite+aiosqlite:////var/lib/sd/m.db"),
        ("postgresql://u:p@db:5432/sd", "postgresql+asyncpg://u:p@db:5432/sd"),
        ("postgresql+asyncpg://u@db/sd", "postgresql+asyncpg://u@db/sd"),
        ("postgres://u@db/sd", "postgresql+asyncpg://u@db/sd"),
    ],
)
def test_normalize_known_url_gives_driver_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_relative_sqlite_path_becomes_absolute() -> None:
    assert normalize_url("data/m.db") == f"sqlite+aiosqlite:///{os.path.abspath('data/m.db')}"
    assert normalize_url("sqlite:///data/m.db") == normalize_url("data/m.db")


@pytest.mark.parametrize(
    "url", ["mysql://db/x", "data/m.sqlite", "sqlite://", "sqlite:///:memory:", "", "redis://x"]
)
def test_unknown_or_unusable_url_raises_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        open_storage(url)


def test_open_storage_picks_backend_class(tmp_path: Path) -> None:
    assert isinstance(open_storage("memory://"), ScratchSqliteStorage)
    assert isinstance(open_storage(str(tmp_path / "m.db")), SqliteStorage)
    assert isinstance(open_storage("postgresql://u@127.0.0.1/x"), PostgresStorage)
