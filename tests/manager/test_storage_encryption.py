"""Storage encrypted at rest, with real manager processes: a plaintext data directory with a
task, its archive and log lines is converted in place by ``--encrypt-storage --migrate``
(backup kept), keeps everything, has no plaintext left on disk, and is served by a manager
started with ``--encrypt-storage``; a wrong key, a missing ``--migrate`` or a missing
``--encrypt-storage`` each stop the manager with one line and exit status 2."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import zipfile
from pathlib import Path

import httpx
import pytest

from swarmdeploy.crypto.keyenc import KdfParams
from swarmdeploy.manager.main import parse_options
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore
from swarmdeploy.manager.settings import SettingsError, load_settings
from swarmdeploy.manager.storage_encryption import (
    MARKER,
    StorageEncryptionError,
    layout_of,
    open_keys,
    open_stores,
)
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import LogQuery
from tests.manager.test_main import _command, _free_ports, _read_admin_key, _wait_healthy
from tests.storage.helpers import add_target, line, target

ARCHIVE_TEXT = "archive-plaintext-marker-5150"
LOG_TEXT = "logline plaintextmarker 8086"
FAST_KDF = KdfParams(ops=2, mem_bytes=8 * 2**20)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SWARMDEPLOY_")}


def _zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("run.sh", f"echo {ARCHIVE_TEXT}\n" * 50)
    return base64.b64encode(buf.getvalue()).decode()


async def _run(*args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *_command(), "manager", *args, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Manager:
    """A running manager process on free loopback ports."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key

    def client(self) -> httpx.AsyncClient:
        """An authenticated client of its REST API."""
        return httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}
        )


async def _serve(data: Path, *extra: str, log: Path) -> tuple[asyncio.subprocess.Process, Manager]:
    http_port, pub_port, sub_port = _free_ports(3)
    args = ["manager", "--data-dir", str(data), "--http-port", str(http_port),
            "--zmq-pub-port", str(pub_port), "--zmq-sub-port", str(sub_port), "--no-gui",
            *extra]  # fmt: skip
    with log.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *_command(), *args, env=_env(), stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    assert proc.stdout is not None
    admin = data / "admin.key"
    try:
        if admin.exists():
            key = admin.read_text().strip()
        else:
            key = await _read_admin_key(proc.stdout)
        await _wait_healthy(f"http://127.0.0.1:{http_port}")
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, Manager(f"http://127.0.0.1:{http_port}", key)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _raw_bytes(data: Path) -> bytes:
    """Every file of the data directory except backups, concatenated."""
    found = []
    for path in sorted(data.rglob("*")):
        if path.is_file() and not any(p.startswith("backup-") for p in path.parts):
            found.append(path.read_bytes())
    return b"".join(found)


async def _plain_data_dir(data: Path, log: Path) -> str:
    """A data directory written by a plaintext manager: one task with an inline archive
    (a blob), plus log lines; returns the task id."""
    os.makedirs(data, mode=0o700)
    storage = open_storage(str(data / "swarmdeploy.db"))
    await storage.open()
    try:
        await add_target(storage, target("pi-1"))
    finally:
        await storage.close()
    proc, manager = await _serve(data, log=log)
    try:
        async with manager.client() as client:
            doc = {
                "description": "encryption migration check",
                "source": {"zip": _zip_b64()},
                "deploy": {"install": {"commands": ["sh run.sh"]}, "target": {"ids": ["pi-1"]}},
            }
            r = await client.post("/tasks", json=doc)
            assert r.status_code == 201, r.text
            task_id: str = r.json()["id"]
    finally:
        await _stop(proc)
    storage = open_storage(str(data / "swarmdeploy.db"))
    await storage.open()
    try:
        await storage.add_logs([line(LOG_TEXT, task_id=task_id, seq=1)])
    finally:
        await storage.close()
    return task_id


async def test_plain_data_dir_is_converted_in_place_and_served_encrypted(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "manager.log"
    task_id = await _plain_data_dir(data, log)
    raw = _raw_bytes(data)
    assert ARCHIVE_TEXT.encode() in raw and b"plaintextmarker" in raw  # the check can fail

    code, _, err = await _run("--data-dir", str(data), "--encrypt-storage")
    assert code == 2 and err.count("\n") == 1 and "--migrate" in err, err

    code, out, err = await _run("--data-dir", str(data), "--encrypt-storage", "--migrate")
    assert code == 0, err
    assert "backup" in out
    backups = [p for p in data.iterdir() if p.name.startswith("backup-before-encryption-")]
    assert len(backups) == 1 and (backups[0] / "swarmdeploy.db").exists()
    assert (data / MARKER).exists()
    raw = _raw_bytes(data)
    assert ARCHIVE_TEXT.encode() not in raw and b"plaintextmarker" not in raw

    code, out, _ = await _run("--data-dir", str(data), "--encrypt-storage", "--migrate")
    assert code == 0 and "nothing to convert" in out

    code, _, err = await _run("--data-dir", str(data))
    assert code == 2 and err.count("\n") == 1 and "--encrypt-storage" in err, err

    proc, manager = await _serve(data, "--encrypt-storage", log=log)
    try:
        async with manager.client() as client:
            task = (await client.get(f"/tasks/{task_id}")).json()
            assert task["description"] == "encryption migration check"
            found = (await client.get("/logs", params={"output": "plaintextmarker"})).json()
            assert [item["output"] for item in found["items"]] == [LOG_TEXT]
    finally:
        await _stop(proc)

    layout = layout_of(data, f"sqlite:///{data / 'swarmdeploy.db'}")
    storage, blobs = open_stores(layout, str(data / "swarmdeploy.db"), open_keys(layout, None))
    await storage.open()
    try:
        record = await storage.get_task(task_id)
        assert record is not None
        assert (await storage.query_logs(LogQuery(output="plaintextmarker"))).total == 1
    finally:
        await storage.close()
    [digest] = [b.digest for b in await blobs.list_blobs()]
    assert ARCHIVE_TEXT.encode() in await blobs.get(digest)


async def test_wrong_passphrase_fails_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    right, wrong = tmp_path / "right.txt", tmp_path / "wrong.txt"
    right.write_text("correct horse battery staple\n")
    wrong.write_text("incorrect horse\n")
    right.chmod(0o600)
    wrong.chmod(0o600)
    os.makedirs(data, mode=0o700)
    layout = layout_of(data, f"sqlite:///{data / 'swarmdeploy.db'}")
    keys = open_keys(layout, right, kdf=FAST_KDF)
    storage, blobs = open_stores(layout, str(data / "swarmdeploy.db"), keys)
    await storage.open()
    await storage.add_logs([line(LOG_TEXT, seq=1)])
    await storage.close()
    await blobs.put(ARCHIVE_TEXT.encode())
    assert b"plaintextmarker" not in _raw_bytes(data)

    with pytest.raises(StorageEncryptionError, match="wrong storage key"):
        open_keys(layout, wrong)
    code, _, err = await _run(
        "--data-dir", str(data), "--encrypt-storage", "--storage-passphrase-file", str(wrong)
    )
    assert code == 2 and err.count("\n") == 1 and "wrong storage key" in err, err
    code, _, err = await _run("--data-dir", str(data), "--encrypt-storage")
    assert code == 2 and err.count("\n") == 1 and "--storage-passphrase-file" in err, err


async def test_migrate_needs_encrypt_storage(tmp_path: Path) -> None:
    code, _, err = await _run("--data-dir", str(tmp_path / "d"), "--migrate")
    assert code == 2 and "--migrate needs --encrypt-storage" in err


def test_passphrase_file_needs_encrypt_storage(tmp_path: Path) -> None:
    passphrase = tmp_path / "p.txt"
    passphrase.write_text("x\n")
    with pytest.raises(SettingsError, match="storage_passphrase_file needs encrypt_storage"):
        load_settings(data_dir=tmp_path, storage_passphrase_file=passphrase)


def test_encrypt_storage_switch_and_environment() -> None:
    assert parse_options(["--encrypt-storage"], {})["encrypt_storage"] is True
    assert parse_options(["--encrypt-storage", "off"], {})["encrypt_storage"] is False
    env = {"SWARMDEPLOY_ENCRYPT_STORAGE": "on"}
    assert parse_options([], env)["encrypt_storage"] is True


def test_postgresql_database_is_left_to_the_server_but_blobs_are_encrypted(tmp_path: Path) -> None:
    url = "postgresql://swarm@127.0.0.1:5432/swarm"
    layout = layout_of(tmp_path, url)
    assert layout.sqlite_path is None
    storage, blobs = open_stores(layout, url, open_keys(layout, None))
    assert type(storage).__name__ == "PostgresStorage"
    assert isinstance(blobs, EncryptedFileBlobStore)
    assert (tmp_path / MARKER).exists()
