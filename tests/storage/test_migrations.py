"""SQL backends: the migrations create exactly the schema of ``storage.tables``, and
constraint violations are translated by kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from swarmdeploy.storage import ApiKeyRecord, Conflict, StorageError, migrate
from swarmdeploy.storage.errors import SchemaError
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.migrate import alembic_config
from swarmdeploy.storage.records import ArtifactRecord, RequestRecord
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import metadata

from .helpers import add_target, target, task

# Full-text structures exist only in the migrations (dialect specific).
_FTS_TABLE_PREFIXES = ("logs_fts", "tasks_fts")
_FTS_COLUMNS = {"output_tsv", "description_tsv"}


def _include(obj: Any, name: str | None, kind: str, reflected: bool, _other: Any) -> bool:
    if kind == "table" and name and name.startswith(_FTS_TABLE_PREFIXES):
        return False
    if kind == "column" and name in _FTS_COLUMNS:
        return False
    return not (kind == "index" and name in {"ix_logs_output_tsv", "ix_tasks_description_tsv"})


def _diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"include_object": _include, "compare_type": True}
    )
    return list(compare_metadata(context, metadata))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


async def test_migrated_schema_matches_table_definitions(fresh_url: str) -> None:
    backend = open_storage(fresh_url)
    assert isinstance(backend, SqlCore)
    await backend.open()
    try:
        async with backend._tx() as conn:
            diff = await conn.run_sync(_diff)
            version = (
                await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            ).scalar()
    finally:
        await backend.close()
    assert diff == []
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_constraint_other_than_unique_is_storage_error_not_conflict(fresh_url: str) -> None:
    backend = open_storage(fresh_url)
    await backend.open()
    try:
        await backend.add_api_key(ApiKeyRecord("k1", "alice", "admin", b"h", 1))
        with pytest.raises(Conflict):
            await backend.add_api_key(ApiKeyRecord("k1", "bob", "admin", b"h", 1))
        null_role = ApiKeyRecord("k2", "carol", None, b"h", 1)  # type: ignore[arg-type]
        with pytest.raises(StorageError) as raised:
            await backend.add_api_key(null_role)
        assert not isinstance(raised.value, Conflict)
    finally:
        await backend.close()


async def test_database_at_0001_upgrades_to_head_keeping_its_data(fresh_url: str) -> None:
    first = open_storage(fresh_url)
    assert isinstance(first, SqlCore)
    engine = first._make_engine()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            await conn.execute(
                sa.text(
                    "INSERT INTO targets (id, curve_key, identity_key, name, tags, token_set,"
                    " created_at, updated_at, log_request_at) VALUES ('t1', 'k', 'i', '', '[]',"
                    " NULL, 1, 1, 0)"
                )
            )
    finally:
        await engine.dispose()
    await first.open()  # runs 0002
    try:
        assert (await first.get_target("t1")) is not None
        assert await first.add_request(RequestRecord("r1", "t1", "stop", {}, 5))
        await add_target(first, target("t2"))
        assert [r.id for r in await first.open_requests("t1")] == ["r1"]
    finally:
        await first.close()


async def test_database_at_0002_upgrades_to_head_and_stores_artifacts(fresh_url: str) -> None:
    first = open_storage(fresh_url)
    assert isinstance(first, SqlCore)
    engine = first._make_engine()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0002"))
    finally:
        await engine.dispose()
    await first.open()
    try:
        await first.add_task(task("k1"), [])
        record = ArtifactRecord("k1", "a" * 64, "artifacts.tar.gz", 5, "b1", 9, ("make",))
        assert await first.add_artifacts([record]) == 1
        assert (await first.list_artifacts(task_id="k1")).items == [record]
    finally:
        await first.close()


def test_the_head_revision_known_without_alembic_is_alembics() -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head == migrate.HEAD_REVISION  # bump HEAD_REVISION with every new migration


_OPEN_AND_REPORT = """
import asyncio, json, sys
from swarmdeploy.storage.factory import open_storage

async def main(url, key):
    storage = open_storage(url, sqlite_key=key, migrate_in_child=True)
    await storage.open()
    await storage.close()

request = json.loads(sys.argv[1])
key = request["key"]
asyncio.run(main(request["url"], None if key is None else bytes.fromhex(key)))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"alembic", "mako"})))
"""


def _open_in_a_manager_like_process(url: str, key: bytes | None = None) -> list[str]:
    """Open ``url`` as the manager does (migrations in a child) in a fresh interpreter;
    the top-level migration packages that interpreter loaded."""
    request = json.dumps({"url": url, "key": None if key is None else key.hex()})
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_REPORT, request],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "sqlcipher"])
async def test_the_manager_migrates_in_a_child_and_never_loads_alembic(
    tmp_path: Path, encrypted: bool
) -> None:
    path = tmp_path / "manager.db"
    key = bytes(range(32)) if encrypted else None
    assert _open_in_a_manager_like_process(f"sqlite:///{path}", key) == []
    assert _open_in_a_manager_like_process(f"sqlite:///{path}", key) == []  # at head: no child
    backend = open_storage(str(path), sqlite_key=key)
    assert isinstance(backend, SqlCore)
    await backend.open()
    try:
        async with backend._tx() as conn:
            assert await conn.run_sync(_diff) == []
            assert await conn.run_sync(migrate.current_revision) == migrate.HEAD_REVISION
    finally:
        await backend.close()


async def test_a_database_from_a_newer_version_is_refused_by_name(fresh_url: str) -> None:
    backend = open_storage(fresh_url)
    assert isinstance(backend, SqlCore)
    await backend.open()
    try:
        async with backend._tx() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await backend.close()
    again = open_storage(fresh_url, migrate_in_child=True)
    with pytest.raises(SchemaError, match=r"migration failed: .*'9999'"):
        await again.open()
