"""SQLite through SQLCipher: no plaintext in the file, the key must fit, and a plaintext
database converted by ``export_encrypted`` keeps its rows and full-text index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmdeploy.storage import KeyRejected, LogQuery
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.sqlcipher import export_encrypted, file_state

from .helpers import add_target, line, target

KEY = bytes(range(32))
OTHER_KEY = bytes(32)
SECRET_LINE = "calibrated gyroscope zanzibarquux"


async def _fill(path: Path, key: bytes | None) -> None:
    storage = open_storage(str(path), sqlite_key=key)
    await storage.open()
    try:
        await add_target(storage, target("t1"))
        await storage.add_logs([line(SECRET_LINE, seq=1)])
    finally:
        await storage.close()


async def _search(path: Path, key: bytes | None) -> int:
    storage = open_storage(str(path), sqlite_key=key)
    await storage.open()
    try:
        return (await storage.query_logs(LogQuery(output="zanzibarquux"))).total
    finally:
        await storage.close()


def _raw(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


async def test_encrypted_file_has_no_plaintext(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    await _fill(tmp_path / "plain" / "m.db", None)
    assert b"zanzibarquux" in _raw(tmp_path / "plain")  # the check below can fail
    (tmp_path / "enc").mkdir()
    await _fill(tmp_path / "enc" / "m.db", KEY)
    assert b"zanzibarquux" not in _raw(tmp_path / "enc")
    assert file_state(tmp_path / "enc" / "m.db") == "encrypted"
    assert await _search(tmp_path / "enc" / "m.db", KEY) == 1


async def test_wrong_key_is_rejected(tmp_path: Path) -> None:
    await _fill(tmp_path / "m.db", KEY)
    with pytest.raises(KeyRejected, match="cannot decrypt"):
        await _search(tmp_path / "m.db", OTHER_KEY)


async def test_encrypted_file_without_key_is_rejected(tmp_path: Path) -> None:
    await _fill(tmp_path / "m.db", KEY)
    with pytest.raises(KeyRejected, match="needs a key"):
        await _search(tmp_path / "m.db", None)


async def test_plaintext_file_with_key_is_rejected(tmp_path: Path) -> None:
    await _fill(tmp_path / "m.db", None)
    with pytest.raises(KeyRejected, match="not encrypted"):
        await _search(tmp_path / "m.db", KEY)


async def test_exported_copy_keeps_rows_and_full_text(tmp_path: Path) -> None:
    await _fill(tmp_path / "m.db", None)
    await asyncio.to_thread(export_encrypted, tmp_path / "m.db", tmp_path / "e.db", KEY)
    assert b"zanzibarquux" not in (tmp_path / "e.db").read_bytes()
    assert await _search(tmp_path / "e.db", KEY) == 1
    storage = open_storage(str(tmp_path / "e.db"), sqlite_key=KEY)
    await storage.open()  # the migrations see the schema at head: nothing to do
    try:
        assert (await storage.get_target("t1")) is not None
    finally:
        await storage.close()
