"""Build-artifact uploads: chunked, resumable, digest-verified, stored as blobs, then
delivered to the deploy targets (docs/protocol.md §6.6)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from swarmdeploy.manager.link.uploads import UploadReceiver
from swarmdeploy.manager.services.blobs import FileBlobStore
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.manifest import decode_manifest
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage import Storage, TaskRecord
from swarmdeploy.storage.factory import open_storage
from tests.manager.link.conftest import FakeAgent, Rig, zip_b64

S = TargetState
TASK = "task-1"
CHUNK = 1024


@contextlib.asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Storage]:
    """The manager's SQLite file in ``tmp_path``, open (each call is a manager start)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'manager.db'}")
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with sqlite(tmp_path) as opened:
        await opened.add_task(TaskRecord(TASK, "build", False, {}, 1, 10**13), [])
        yield opened


def receiver(
    tmp_path: Path, storage: Storage, *, max_bytes: int = 1 << 20
) -> tuple[UploadReceiver, FileBlobStore]:
    blobs = FileBlobStore(tmp_path / "blobs")
    up = UploadReceiver(
        tmp_path / "up",
        storage,
        blobs,
        chunk_bytes=4096,
        max_upload_bytes=max_bytes,
        clock=lambda: 5,
    )
    return up, blobs


def offer(data: bytes, sha256: str | None = None) -> m.UploadOffer:
    return m.UploadOffer(
        task_id=TASK,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        name="out.tar.gz",
        size_bytes=len(data),
        chunk_bytes=CHUNK,
    )


def chunk(data: bytes, index: int, sha256: str | None = None) -> m.UploadChunk:
    return m.UploadChunk(
        task_id=TASK,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        index=index,
        data=data[index * CHUNK : (index + 1) * CHUNK],
    )


async def test_upload_completes_and_lands_in_blob_store(tmp_path: Path, storage: Storage) -> None:
    up, blobs = receiver(tmp_path, storage)
    data = os.urandom(3 * CHUNK + 10)
    ack = await up.offer(offer(data))
    assert isinstance(ack, m.UploadAck) and (ack.next_index, ack.complete) == (0, False)
    for index in range(4):
        ack = await up.chunk(chunk(data, index))
        assert isinstance(ack, m.UploadAck)
    assert ack.complete and ack.next_index == 4
    digest = hashlib.sha256(data).hexdigest()
    assert await blobs.get(digest) == data
    [info] = await up.completed(TASK)
    assert (info.name, info.sha256, info.size_bytes, info.chunk_bytes) == (
        "out.tar.gz",
        digest,
        len(data),
        4096,
    )
    again = await up.offer(offer(data))  # a repeated offer after completion
    assert isinstance(again, m.UploadAck) and again.complete


async def test_upload_resumes_after_restart_at_next_index(tmp_path: Path, storage: Storage) -> None:
    up, _ = receiver(tmp_path, storage)
    data = os.urandom(3 * CHUNK)
    await up.offer(offer(data))
    await up.chunk(chunk(data, 0))
    await up.chunk(chunk(data, 1))
    await storage.close()  # the manager stops; a new one opens the same database
    async with sqlite(tmp_path) as reopened:
        restarted, blobs = receiver(tmp_path, reopened)
        ack = await restarted.offer(offer(data))
        assert isinstance(ack, m.UploadAck) and ack.next_index == 2
        done = await restarted.chunk(chunk(data, 2))
        assert isinstance(done, m.UploadAck) and done.complete
        assert await blobs.get(offer(data).sha256) == data


async def test_lost_partial_file_starts_the_upload_over(tmp_path: Path, storage: Storage) -> None:
    up, _ = receiver(tmp_path, storage)
    data = os.urandom(3 * CHUNK)
    await up.offer(offer(data))
    await up.chunk(chunk(data, 0))
    (tmp_path / "up" / TASK / f"{offer(data).sha256}.part").unlink()
    ack = await up.offer(offer(data))
    assert isinstance(ack, m.UploadAck) and ack.next_index == 0
    record = await storage.get_upload(TASK, offer(data).sha256)
    assert record is not None and record.next_index == 0


async def test_deleted_task_takes_its_records_and_partial_files(
    tmp_path: Path, storage: Storage
) -> None:
    up, _ = receiver(tmp_path, storage)
    data = os.urandom(3 * CHUNK)
    await up.offer(offer(data))
    await up.chunk(chunk(data, 0))
    legacy = tmp_path / "up" / TASK / f"{offer(data).sha256}.json"  # an older version's record
    legacy.write_text("{}")
    assert await up.remove_orphans() == 1  # the unfinished upload's file stays
    assert (tmp_path / "up" / TASK / f"{offer(data).sha256}.part").exists()
    await storage.delete_task(TASK)
    assert await storage.list_uploads(TASK) == []
    assert await up.remove_orphans() == 1
    assert not (tmp_path / "up" / TASK).exists()


async def test_repeats_and_gaps_answered_with_next_index(tmp_path: Path, storage: Storage) -> None:
    up, _ = receiver(tmp_path, storage)
    data = os.urandom(3 * CHUNK)
    await up.offer(offer(data))
    await up.chunk(chunk(data, 0))
    repeat = await up.chunk(chunk(data, 0))
    gap = await up.chunk(chunk(data, 2))
    assert isinstance(repeat, m.UploadAck) and repeat.next_index == 1
    assert isinstance(gap, m.UploadAck) and gap.next_index == 1


async def test_digest_mismatch_discards_the_upload(tmp_path: Path, storage: Storage) -> None:
    up, blobs = receiver(tmp_path, storage)
    data = os.urandom(2 * CHUNK)
    wrong = hashlib.sha256(b"something else").hexdigest()
    await up.offer(offer(data, wrong))
    await up.chunk(chunk(data, 0, wrong))
    error = await up.chunk(chunk(data, 1, wrong))
    assert isinstance(error, m.Error) and error.code == "digest_mismatch"
    assert await up.completed(TASK) == []
    assert await blobs.size(wrong) is None
    fresh = await up.offer(offer(data, wrong))  # starts over at 0
    assert isinstance(fresh, m.UploadAck) and fresh.next_index == 0


async def test_refusals_too_large_wrong_size_and_no_offer(tmp_path: Path, storage: Storage) -> None:
    up, _ = receiver(tmp_path, storage, max_bytes=2048)
    big = os.urandom(4096)
    too_large = await up.offer(offer(big))
    assert isinstance(too_large, m.Error) and too_large.code == "too_large"
    data = os.urandom(2 * CHUNK)
    no_offer = await up.chunk(chunk(data, 0))
    assert isinstance(no_offer, m.Error) and no_offer.code == "unknown_artifact"
    await up.offer(offer(data))
    short = m.UploadChunk(task_id=TASK, sha256=offer(data).sha256, index=0, data=b"x")
    wrong = await up.chunk(short)
    assert isinstance(wrong, m.Error) and wrong.code == "invalid_message"


async def test_empty_artifact_completes_at_offer(tmp_path: Path, storage: Storage) -> None:
    up, _ = receiver(tmp_path, storage)
    ack = await up.offer(offer(b""))
    assert isinstance(ack, m.UploadAck) and ack.complete


def build_doc(host: str, target: str) -> dict[str, object]:
    return {
        "description": "build then deploy",
        "source": {"zip": zip_b64({"main.c": "int main(){return 0;}"})},
        "build": {"host": host, "commands": ["make"], "artifacts": ["out"]},
        "deploy": {"run": {"commands": ["./out"]}, "target": {"ids": [target]}},
    }


def acked_upto(next_index: int) -> Callable[[m.UploadAck], bool]:
    return lambda ack: ack.next_index == next_index


async def push(agent: FakeAgent, task_id: str, data: bytes) -> m.UploadAck:
    sha = hashlib.sha256(data).hexdigest()
    await agent.send(
        m.UploadOffer(task_id=task_id, sha256=sha, name="out.tar.gz", size_bytes=len(data))
    )
    ack = await agent.take(m.UploadAck)
    count = -(-len(data) // m.DEFAULT_CHUNK_BYTES)
    for i in range(ack.next_index, count):
        part = data[i * m.DEFAULT_CHUNK_BYTES : (i + 1) * m.DEFAULT_CHUNK_BYTES]
        await agent.send(m.UploadChunk(task_id=task_id, sha256=sha, index=i, data=part))
        ack = await agent.take(m.UploadAck, acked_upto(i + 1))
    return ack


async def test_build_upload_then_deploy_targets_fetch_the_artifact(rig: Rig) -> None:
    builder = await rig.agent("b1")
    target = await rig.agent("t1")
    task_id = await rig.create_task(build_doc("b1", "t1"))
    announce = await builder.take(m.Announce)
    assert announce.kind == "build" and announce.size_bytes > 0
    await target.sync()
    assert target.count(m.Announce) == 0  # nothing to deliver before the build is done
    await builder.report(task_id, S.ACCEPTED)
    await builder.send(m.FetchTask(task_id=task_id))
    manifest = decode_manifest((await builder.take(m.Task)).manifest)
    assert (manifest.kind, manifest.build_commands, manifest.build_artifacts) == (
        "build",
        ["make"],
        ["out"],
    )
    data = os.urandom(300_000)
    await builder.send(
        m.UploadOffer(task_id=task_id, sha256="a" * 64, name="out.tar.gz", size_bytes=1)
    )
    assert (await builder.take(m.Error)).code == "not_authorized"  # not building yet
    await builder.report(task_id, S.BUILDING)
    assert (await push(builder, task_id, data)).complete
    await target.send(m.FetchTask(task_id=task_id))
    assert (await target.take(m.Error)).code == "not_authorized"
    await builder.report(task_id, S.BUILT)
    announce = await target.take(m.Announce)
    assert announce.kind == "deploy" and announce.size_bytes == len(data)
    await target.report(task_id, S.ACCEPTED)
    await target.send(m.FetchTask(task_id=task_id))
    deploy = decode_manifest((await target.take(m.Task)).manifest)
    [art] = deploy.artifacts
    assert art.sha256 == hashlib.sha256(data).hexdigest() and deploy.run == ["./out"]
    await target.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=1))
    assert (await target.take(m.Chunk)).data == data[art.chunk_bytes : 2 * art.chunk_bytes]


async def test_built_records_the_artifact_with_provenance_before_it_is_acked(rig: Rig) -> None:
    builder = await rig.agent("b1")
    await rig.agent("t1")
    task_id = await rig.create_task(build_doc("b1", "t1"))
    await builder.take(m.Announce)
    await builder.report(task_id, S.ACCEPTED)
    before = rig.clock()
    await builder.report(task_id, S.BUILDING)
    data = os.urandom(70_000)
    await push(builder, task_id, data)
    rig.clock.advance(2.5)
    assert (await builder.report(task_id, S.BUILT)).ok
    assert (await builder.report(task_id, S.BUILT)).ok  # a repeat (lost ack) records once
    storage = rig.api.storage
    [record] = (await storage.list_artifacts(task_id=task_id)).items
    assert (record.sha256, record.size_bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (record.build_host, record.commands) == ("b1", ("make",))
    build = await storage.get_build(task_id)
    assert build is not None and build.started_at is not None
    assert before <= build.started_at and build.finished_at == record.built_at
    doc = (await rig.api.client.get(f"/tasks/{task_id}")).json()["build"]
    assert doc["durationMs"] == record.built_at - build.started_at >= 2500
    assert doc["artifacts"][0]["sha256"] == record.sha256
    # The deploy manifest was signed when the build delivered, binding the artifact, with
    # the key that signed the build manifest at creation.
    signed_build = await storage.get_task_signature(task_id, "build")
    signed_deploy = await storage.get_task_signature(task_id, "deploy")
    assert signed_build is not None and signed_deploy is not None
    assert signed_deploy.key_id == signed_build.key_id
    assert signed_deploy.sequence > signed_build.sequence
    [art] = decode_manifest(signed_deploy.manifest).artifacts
    assert (art.sha256, art.size_bytes) == (record.sha256, len(data))


async def test_failed_build_stops_deploy_targets_before_the_ack_and_never_announces(
    rig: Rig,
) -> None:
    builder = await rig.agent("b1")
    target = await rig.agent("t1")
    task_id = await rig.create_task(build_doc("b1", "t1"))
    await builder.take(m.Announce)
    await builder.report(task_id, S.ACCEPTED)
    await builder.report(task_id, S.BUILDING)
    ack = await builder.report(task_id, S.BUILD_FAILED, "build command 'make' exited 2")
    assert ack.ok
    assert await rig.row_state(task_id, "t1") == "stopped"  # already when the ack came
    doc = (await rig.api.client.get(f"/tasks/{task_id}")).json()
    assert doc["status"] == "failed"
    assert doc["targets"][1]["reason"] == "build failed: build command 'make' exited 2"
    await target.sync()
    assert target.count(m.Announce) == 0
