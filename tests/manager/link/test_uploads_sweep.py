"""Sweeping partial build uploads (``UploadReceiver.remove_orphans``): resumable uploads keep
their file, orphans go, uploads idle for longer than the expiry are discarded."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmdeploy.manager.link.uploads import UploadReceiver
from swarmdeploy.manager.services.blobs import FileBlobStore
from swarmdeploy.storage import Storage, TaskRecord
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import UploadRecord
from tests.manager.services.conftest import FakeClock

HOUR_MS = 3_600_000
IDLE, ACTIVE, NO_FILE = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    opened = open_storage(f"sqlite:///{tmp_path / 'manager.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_uploads_idle_past_the_expiry_are_discarded(storage: Storage, tmp_path: Path) -> None:
    clock = FakeClock(1_000 * HOUR_MS)
    receiver = UploadReceiver(
        tmp_path / "up", storage, FileBlobStore(tmp_path / "blobs"),
        chunk_bytes=4, max_upload_bytes=1 << 20, clock=clock, idle_expiry_ms=2 * HOUR_MS,
    )  # fmt: skip
    await storage.add_task(TaskRecord("t1", "build", False, {}, 1, 10**13), [])
    created = clock.now - 3 * HOUR_MS
    for sha in (IDLE, ACTIVE, NO_FILE):
        await storage.start_upload(UploadRecord("t1", sha, sha[:1], 12, 4, created, 1))
    folder = tmp_path / "up" / "t1"
    folder.mkdir(parents=True)
    for sha, age_ms in ((IDLE, 3 * HOUR_MS), (ACTIVE, HOUR_MS)):
        part = folder / f"{sha}.part"
        part.write_bytes(b"1234")
        written_ns = (clock.now - age_ms) * 1_000_000
        os.utime(part, ns=(written_ns, written_ns))

    assert await receiver.remove_orphans() == 1

    assert [p.name for p in folder.iterdir()] == [f"{ACTIVE}.part"]
    assert [u.sha256 for u in await storage.list_uploads("t1")] == [ACTIVE]
    clock.now += HOUR_MS + 1
    assert await receiver.remove_orphans() == 1
    assert not folder.exists() and await storage.list_uploads("t1") == []
