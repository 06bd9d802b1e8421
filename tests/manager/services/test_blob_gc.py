"""Blob garbage collection (docs/storage.md "Blob lifecycle"): real blob files in
``tmp_path``, the manager's SQLite file, a fake clock that starts at the wall clock (blob
times are file mtimes) and moves only when a test says so."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import zipfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from swarmdeploy.manager.clock import wall_ms
from swarmdeploy.manager.dispatch import MemoryDispatcher
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.link.uploads import UploadReceiver
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.blob_gc import GRACE_MS, BlobCollector, Freed
from swarmdeploy.manager.services.blobs import FileBlobStore
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.manager.services.tasks import TaskService
from swarmdeploy.storage import Storage
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import ArtifactRecord, TargetRecord, TaskRecord, UploadRecord
from tests.manager.scrape import sample
from tests.manager.services.conftest import FakeClock


def _zip(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.sh", text)
    return buf.getvalue()


def _task(text: str) -> dict[str, object]:
    """A descriptor deploying an inline archive with ``text`` to target ``a``."""
    return {
        "source": {"zip": base64.b64encode(_zip(text)).decode()},
        "deploy": {"install": {"commands": ["true"]}, "target": {"ids": ["a"]}},
    }


@dataclasses.dataclass
class Rig:
    root: Path
    storage: Storage
    clock: FakeClock
    blobs: FileBlobStore
    metrics: Metrics
    tasks: TaskService
    gc: BlobCollector

    async def create(self, text: str) -> tuple[str, str]:
        """A stored task with an archive: ``(task id, archive digest)``; the clock is set to
        the time the archive was stored."""
        view = await self.tasks.create(_task(text), created_by="me")
        assert view.record.source_digest is not None
        await self._sync(view.record.source_digest)
        return view.record.id, view.record.source_digest

    async def put(self, data: bytes) -> str:
        """Store a blob; the clock is set to the time it was stored."""
        digest = await self.blobs.put(data)
        await self._sync(digest)
        return digest

    async def _sync(self, digest: str) -> None:
        info = await self.blobs.info(digest)
        assert info is not None
        self.clock.now = info.stored_at_ms

    def age(self, ms: int) -> None:
        self.clock.now += ms

    async def stored(self, digest: str) -> bool:
        return await self.blobs.size(digest) is not None


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    storage = open_storage(f"sqlite:///{tmp_path / 'manager.db'}")
    await storage.open()
    clock = FakeClock(wall_ms())
    events = EventHub(queue_size=1000)
    metrics = Metrics()
    blobs = FileBlobStore(tmp_path / "blobs")
    tasks = TaskService(
        storage,
        blobs=blobs,
        events=events,
        dispatcher=MemoryDispatcher(max_per_target=8),
        logs=LogService(storage, events=events, metrics=metrics, clock=clock),
        states=TaskStates(storage, events=events, clock=clock),
        clock=clock,
        audit=AuditLog(storage, clock=clock),
    )
    gc = BlobCollector(
        storage, blobs, clock=clock, metrics=metrics, spool_dir=tmp_path / "incoming"
    )
    tasks.add_delete_listener(gc)
    await storage.create_token_set("s", [b"t" * 16], created_at=0, expires_at=clock.now + 10**9)
    target = TargetRecord(id="a", curve_key="k", identity_key="i", created_at=0, updated_at=0)
    await storage.register_target(b"t" * 16, target, now=clock.now)
    try:
        yield Rig(tmp_path, storage, clock, blobs, metrics, tasks, gc)
    finally:
        await storage.close()


# -- the rule -------------------------------------------------------------------------------------


async def test_deleted_task_archive_goes_after_the_grace_period_not_before(rig: Rig) -> None:
    task_id, digest = await rig.create("echo one")
    size = await rig.blobs.size(digest)
    await rig.tasks.delete(task_id)  # the hook runs at once: the blob is too fresh
    assert await rig.stored(digest)
    rig.age(GRACE_MS - 1_000)
    assert await rig.gc.periodic() == Freed()
    assert await rig.stored(digest)
    rig.age(2_000)
    assert await rig.gc.periodic() == Freed(1, size or 0)
    assert not await rig.stored(digest)
    assert (rig.metrics.blobs_collected, rig.metrics.blob_bytes_freed) == (1, size)


async def test_deleting_a_task_frees_its_old_archive_at_once(rig: Rig) -> None:
    task_id, digest = await rig.create("echo old")
    rig.age(GRACE_MS + 1)
    await rig.tasks.delete(task_id)
    assert not await rig.stored(digest)
    assert sample(rig.metrics.render().decode(), "swarmdeploy_blobs_collected_total") == 1


async def test_archive_shared_by_two_tasks_survives_deleting_one(rig: Rig) -> None:
    first, digest = await rig.create("echo shared")
    second, same = await rig.create("echo shared")
    assert same == digest
    rig.age(GRACE_MS + 1)
    await rig.tasks.delete(first)
    assert await rig.gc.periodic() == Freed()
    assert await rig.stored(digest)
    await rig.tasks.delete(second)
    assert not await rig.stored(digest)


async def test_artifact_in_the_catalogue_survives(rig: Rig) -> None:
    await rig.storage.add_task(TaskRecord("built", "b", False, {}, 1, 10**13), [])
    digest = await rig.put(b"artifact bytes")
    record = ArtifactRecord("built", digest, "artifacts.tar.gz", 14, "b1", 5)
    await rig.storage.add_artifacts([record])
    rig.age(GRACE_MS + 1)
    assert await rig.gc.periodic() == Freed()
    assert await rig.stored(digest)
    await rig.tasks.delete("built")
    assert not await rig.stored(digest)


async def test_upload_record_keeps_its_blob(rig: Rig) -> None:
    await rig.storage.add_task(TaskRecord("up", "b", False, {}, 1, 10**13), [])
    digest = await rig.put(b"uploaded bytes")
    await rig.storage.start_upload(UploadRecord("up", digest, "out", 14, 4, 1, 4, True))
    rig.age(GRACE_MS + 1)
    assert await rig.gc.collect([digest]) == Freed()
    assert await rig.stored(digest)


async def test_blob_of_a_task_not_stored_yet_survives(rig: Rig) -> None:
    digest = await rig.put(b"archive of a task being created")
    assert await rig.gc.periodic() == Freed()
    rig.age(GRACE_MS - 1)
    assert await rig.gc.collect([digest]) == Freed()
    assert await rig.stored(digest)


async def test_storing_old_unreferenced_bytes_again_restarts_the_grace_period(
    rig: Rig,
) -> None:
    digest = await rig.blobs.put(b"bytes of a deleted task")
    path = rig.root / "blobs" / digest[:2] / digest
    old_ns = (rig.clock.now - GRACE_MS - 60_000) * 1_000_000
    os.utime(path, ns=(old_ns, old_ns))  # unreferenced for over an hour ...
    assert await rig.blobs.put(b"bytes of a deleted task") == digest  # ... a new task stores it
    assert await rig.gc.periodic() == Freed()
    assert await rig.stored(digest)


async def test_unreferenced_blobs_are_freed_in_batches(rig: Rig) -> None:
    digests = [await rig.blobs.put(f"blob {i}".encode()) for i in range(450)]
    _, kept = await rig.create("echo kept")
    rig.age(GRACE_MS + 1)
    freed = await rig.gc.periodic()
    assert freed.blobs == 450
    assert await rig.blobs.list_blobs() == [await rig.blobs.info(kept)]
    assert not any([await rig.stored(d) for d in digests])


class RacingStorage:
    """A storage whose first reference check misses a task stored right after it (the
    task's row lands between the collector's first check and its detach)."""

    def __init__(self, inner: Storage, digest: str) -> None:
        self.inner = inner
        self.digest = digest
        self.checks = 0

    async def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        self.checks += 1
        found = await self.inner.referenced_digests(digests)
        if self.checks == 1:
            task = TaskRecord("late", "late", False, {}, 1, 10**13, source_digest=self.digest)
            await self.inner.add_task(task, [])
        return found


async def test_reference_stored_during_a_pass_keeps_the_blob(rig: Rig) -> None:
    digest = await rig.put(b"referenced while collecting")
    racing = RacingStorage(rig.storage, digest)
    gc = BlobCollector(racing, rig.blobs, clock=rig.clock)  # type: ignore[arg-type]
    rig.age(GRACE_MS + 1)
    assert await gc.collect([digest]) == Freed()
    assert racing.checks == 2
    assert await rig.stored(digest)
    assert not any((rig.root / "blobs" / ".detached").iterdir())


# -- detaching ----------------------------------------------------------------------------------


async def test_blob_stored_again_after_listing_is_not_detached(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = await store.put(b"x")
    path = tmp_path / digest[:2] / digest
    os.utime(path, ns=(10**15, 10**15))
    listed = await store.info(digest)
    assert listed is not None
    await store.put(b"x")  # a new task stores the same bytes after the listing
    assert await store.detach(listed) is None
    assert await store.get(digest) == b"x"


async def test_restore_keeps_a_copy_stored_while_detached(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = await store.put(b"y")
    listed = await store.info(digest)
    assert listed is not None
    aside = await store.detach(listed)
    assert aside is not None and await store.size(digest) is None  # out of sight
    await store.put(b"y")
    fresh = await store.info(digest)
    await store.restore(aside)
    assert await store.info(digest) == fresh
    assert not any((tmp_path / ".detached").iterdir())


async def test_tidy_restores_detached_blobs_and_removes_old_temporaries(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = await store.put(b"z")
    listed = await store.info(digest)
    assert listed is not None
    assert await store.detach(listed) is not None  # a pass interrupted here
    old, new = tmp_path / digest[:2] / ".tmp-old", tmp_path / digest[:2] / ".tmp-new"
    old.write_bytes(b"half")
    new.write_bytes(b"half")
    os.utime(old, ns=(10**15, 10**15))
    assert await store.tidy(temporary_before_ms=wall_ms() - 60_000) == 1
    assert await store.get(digest) == b"z"
    assert not old.exists() and new.exists()
    assert await store.tidy(temporary_before_ms=None) == 1
    assert not new.exists()


# -- files of interrupted work --------------------------------------------------------------------


async def test_start_up_sweep_keeps_a_resumable_upload_and_removes_orphans(rig: Rig) -> None:
    uploads = UploadReceiver(
        rig.root / "uploads", rig.storage, rig.blobs,
        chunk_bytes=4, max_upload_bytes=1 << 20, clock=rig.clock,
    )  # fmt: skip
    await rig.storage.add_task(TaskRecord("t1", "b", False, {}, 1, 10**13), [])
    resumable, finished = "a" * 64, "b" * 64
    await rig.storage.start_upload(UploadRecord("t1", resumable, "out", 12, 4, rig.clock.now, 1))
    await rig.storage.start_upload(UploadRecord("t1", finished, "o2", 4, 4, rig.clock.now, 1, True))
    folder = rig.root / "uploads" / "t1"
    folder.mkdir(parents=True)
    for name in (resumable, finished, "c" * 64):
        (folder / f"{name}.part").write_bytes(b"1234")
    gone = rig.root / "uploads" / "deleted-task"
    gone.mkdir()
    (gone / f"{'d' * 64}.part").write_bytes(b"1234")
    spool = rig.root / "incoming"
    spool.mkdir()
    (spool / "upload-0123456789abcdef.part").write_bytes(b"half an archive")
    digest = await rig.blobs.put(b"blob")
    temporary = rig.root / "blobs" / digest[:2] / ".tmp-abc"
    temporary.write_bytes(b"half a blob")

    await rig.gc.at_start(uploads)

    assert sorted(p.name for p in folder.iterdir()) == [f"{resumable}.part"]
    assert not gone.exists()
    assert not any(spool.iterdir())
    assert not temporary.exists() and await rig.stored(digest)


async def test_periodic_pass_removes_only_stale_spool_files(rig: Rig) -> None:
    spool = rig.root / "incoming"
    spool.mkdir()
    stale, live = spool / "upload-1.part", spool / "upload-2.part"
    stale.write_bytes(b"abandoned")
    live.write_bytes(b"being received")
    old_ns = (rig.clock.now - GRACE_MS - 1) * 1_000_000
    os.utime(stale, ns=(old_ns, old_ns))
    await rig.gc.periodic()
    assert not stale.exists() and live.exists()
