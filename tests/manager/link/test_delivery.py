"""Two-stage delivery: announcements, manifests and chunks (docs/protocol.md §6.2 step 4,
§6.3, §6.5)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from swarmdeploy.manager.services.blob_cipher import HEADER_BYTES
from swarmdeploy.manager.services.blobs import FileBlobStore
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.manifest import decode_manifest
from swarmdeploy.protocol.states import TargetState
from tests.manager.link.conftest import FakeAgent, Rig, deploy_doc, link_rig

S = TargetState


class RecordingBlobStore(FileBlobStore):
    """A real file blob store that records how blobs are read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.whole_reads = 0
        self.range_reads: list[int] = []

    async def get(self, digest: str) -> bytes:
        self.whole_reads += 1
        return await super().get(digest)

    async def read_range(self, digest: str, offset: int, length: int) -> bytes:
        self.range_reads.append(length)
        return await super().read_range(digest, offset, length)


def big_zip_b64(size: int) -> tuple[str, bytes]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("blob.bin", os.urandom(size))
    raw = buf.getvalue()
    return base64.b64encode(raw).decode(), raw


@pytest.fixture
async def blob_rig(tmp_path: Path) -> AsyncIterator[tuple[Rig, RecordingBlobStore]]:
    blobs = RecordingBlobStore(tmp_path / "blobs")
    async with link_rig(tmp_path, app={"blobs": blobs}) as rig:
        yield rig, blobs


def chunk_index(index: int) -> Callable[[m.Chunk], bool]:
    return lambda chunk: chunk.index == index


async def accepted(rig: Rig, agent: FakeAgent, doc: dict[str, object]) -> str:
    task_id = await rig.create_task(doc)
    await agent.take(m.Announce)
    assert (await agent.report(task_id, S.ACCEPTED)).ok
    return task_id


async def test_new_task_announced_at_once_to_connected_target(rig: Rig) -> None:
    agent = await rig.agent("t1", tags=["lab"])
    await agent.transport.set_tags(["lab"])
    task_id = await rig.create_task(deploy_doc(tags=["lab"], debug=True))
    announce = await agent.take(m.Announce)
    assert announce.task_id == task_id and announce.kind == "deploy" and announce.debug
    assert announce.size_bytes > 0 and announce.arch == []
    task = await rig.api.storage.get_task(task_id)
    assert task is not None and announce.expires_at_ms == task.expires_at
    await rig.wait_row(task_id, "t1", "announced")
    await agent.sync()
    assert agent.count(m.Hint) == 0  # it has the announcement: no hint to answer


async def test_target_not_known_connected_is_hinted_by_tag_and_id(rig: Rig) -> None:
    by_tag = await rig.agent("t1", tags=["lab"])
    await by_tag.transport.set_tags(["lab"])
    by_id = await rig.agent("t2")
    rig.clock.advance(rig.api.settings.online_timeout_ms / 1000 + 1)
    await rig.link.sweep()  # both went silent: the manager counts them offline
    task_id = await rig.create_task(deploy_doc(tags=["lab"], ids=["t2"]))
    for agent in (by_tag, by_id):
        hint = await agent.take(m.Hint)
        assert hint.reason == "task" and hint.task_id == task_id
        assert agent.count(m.Announce) == 0
        await agent.hello()  # what an agent does with a hint
        assert (await agent.take(m.Announce)).task_id == task_id


async def test_offline_target_announced_at_next_hello(rig: Rig) -> None:
    online = await rig.agent("t1")
    offline = await rig.agent("t2", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1", "t2"]))
    await online.take(m.Announce)
    await online.sync()
    assert await rig.row_state(task_id, "t2") == "pending"
    await offline.start()
    announce = await offline.take(m.Announce)
    assert announce.task_id == task_id
    await rig.wait_row(task_id, "t2", "announced")
    await offline.hello()  # still undelivered: announced again at every hello
    assert (await offline.take(m.Announce)).task_id == task_id


async def test_expired_task_not_announced_and_expiry_publishes(rig: Rig) -> None:
    agent = await rig.agent("t1", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1"], expiresIn=60))
    rig.clock.advance(61)
    await agent.start()
    await agent.take(m.Welcome)
    await agent.sync()
    assert agent.count(m.Announce) == 0
    sub = rig.api.services.events.subscribe(["taskUpdated"], task=task_id)
    assert await rig.api.services.tasks.expire() == 1
    event = await sub.get()
    assert getattr(event, "payload", {}).get("state") == "expired"


async def test_task_stopped_before_delivery_is_not_announced(rig: Rig) -> None:
    agent = await rig.agent("t1", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    assert (await rig.api.client.put(f"/tasks/{task_id}/stop")).status_code == 202
    await agent.start()
    await agent.take(m.Welcome)
    await agent.sync()
    assert agent.count(m.Announce) == 0
    assert await rig.row_state(task_id, "t1") == "stopped"


async def test_fetch_refused_before_accept_then_stored_signed_manifest_served(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    await agent.send(m.FetchTask(task_id=task_id))
    refused = await agent.take(m.Error)
    assert (refused.code, refused.in_reply_to, refused.task_id) == (
        "not_authorized",
        "fetch_task",
        task_id,
    )
    await agent.report(task_id, S.ACCEPTED)
    await agent.send(m.FetchTask(task_id=task_id))
    task = await agent.take(m.Task)
    manifest = decode_manifest(task.manifest)
    assert manifest.task_id == task_id and manifest.kind == "deploy"
    assert (manifest.install, manifest.run, manifest.auto_restart) == (
        ["true"],
        ["python3 app.py"],
        True,
    )
    view = (await rig.api.client.get(f"/tasks/{task_id}")).json()
    [artifact] = manifest.artifacts
    assert artifact.sha256 == view["source"]["sha256"] and artifact.name == "source.zip"
    stored = await rig.api.storage.get_task_signature(task_id, "deploy")
    assert stored is not None  # the stored signed bytes, unchanged
    assert (task.manifest, task.signature, task.certificate) == (
        stored.manifest,
        stored.signature,
        stored.certificate,
    )


async def test_fetch_of_unknown_task_and_of_others_task(rig: Rig) -> None:
    agent = await rig.agent("t1")
    other = await rig.agent("t2")
    task_id = await rig.create_task(deploy_doc(ids=["t2"]))
    await other.take(m.Announce)
    await other.report(task_id, S.ACCEPTED)
    await agent.send(m.FetchTask(task_id=task_id))
    assert (await agent.take(m.Error)).code == "not_authorized"
    await agent.send(m.FetchTask(task_id="nope"))
    assert (await agent.take(m.Error)).code == "unknown_task"


async def test_chunks_served_from_blob_in_bounded_reads(
    blob_rig: tuple[Rig, RecordingBlobStore],
) -> None:
    rig, blobs = blob_rig
    agent = await rig.agent("t1")
    archive_b64, raw = big_zip_b64(600_000)
    doc = deploy_doc(ids=["t1"])
    doc["source"] = {"zip": archive_b64}
    task_id = await accepted(rig, agent, doc)
    await agent.send(m.FetchTask(task_id=task_id))
    [art] = decode_manifest((await agent.take(m.Task)).manifest).artifacts
    assert art.size_bytes == len(raw) and art.chunk_count == 3
    blobs.range_reads.clear()
    for index in range(art.chunk_count):
        await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=index))
    parts = [(await agent.take(m.Chunk, chunk_index(i))).data for i in range(art.chunk_count)]
    assert hashlib.sha256(b"".join(parts)).hexdigest() == art.sha256
    assert blobs.whole_reads == 0
    assert len(blobs.range_reads) == 3 and max(blobs.range_reads) <= art.chunk_bytes


async def test_chunk_errors_for_bad_index_unknown_artifact_and_unaccepted(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await accepted(rig, agent, deploy_doc(ids=["t1"]))
    await agent.send(m.FetchTask(task_id=task_id))
    [art] = decode_manifest((await agent.take(m.Task)).manifest).artifacts
    await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=art.chunk_count))
    bad = await agent.take(m.Error)
    assert (bad.code, bad.index, bad.sha256) == ("bad_index", art.chunk_count, art.sha256)
    await agent.send(m.ChunkRequest(task_id=task_id, sha256="0" * 64, index=0))
    assert (await agent.take(m.Error)).code == "unknown_artifact"
    await agent.report(task_id, S.INSTALLING)  # past the transfer: no more chunks
    await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=0))
    assert (await agent.take(m.Error)).code == "not_authorized"


async def test_task_without_archive_has_no_artifacts(rig: Rig) -> None:
    agent = await rig.agent("t1")
    doc = deploy_doc(ids=["t1"])
    del doc["source"]
    task_id = await rig.create_task(doc)
    assert (await agent.take(m.Announce)).size_bytes == 0
    await agent.report(task_id, S.ACCEPTED)
    await agent.send(m.FetchTask(task_id=task_id))
    assert decode_manifest((await agent.take(m.Task)).manifest).artifacts == []


async def test_storage_outage_answers_busy_so_the_agent_retries(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await accepted(rig, agent, deploy_doc(ids=["t1"]))
    await agent.send(m.FetchTask(task_id=task_id))
    [art] = decode_manifest((await agent.take(m.Task)).manifest).artifacts
    await rig.api.storage.close()
    rig.link.delivery.forget_all()  # nothing of the task in memory: the check needs storage
    await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=0))
    busy = await agent.take(m.Error)
    assert (busy.code, busy.in_reply_to, busy.index) == ("busy", "chunk_request", 0)


async def test_encrypted_chunk_tampered_after_the_fetch_is_not_served(tmp_path: Path) -> None:
    blobs = EncryptedFileBlobStore(tmp_path / "encrypted-blobs", bytes(range(32)))
    async with link_rig(tmp_path, app={"blobs": blobs}) as rig:
        agent = await rig.agent("t1")
        archive_b64, _ = big_zip_b64(600_000)
        doc = deploy_doc(ids=["t1"])
        doc["source"] = {"zip": archive_b64}
        task_id = await accepted(rig, agent, doc)
        await agent.send(m.FetchTask(task_id=task_id))
        [art] = decode_manifest((await agent.take(m.Task)).manifest).artifacts
        [path] = list((tmp_path / "encrypted-blobs").rglob(art.sha256))
        sealed = bytearray(path.read_bytes())
        sealed[HEADER_BYTES + 10] ^= 0x01  # the first 64 KiB chunk of the blob
        path.write_bytes(bytes(sealed))
        await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=1))
        assert (await agent.take(m.Chunk, chunk_index(1))).data  # other chunks still served
        await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=0))
        error = await agent.take(m.Error)
        assert error.code == "unknown_artifact" and "damaged" in error.message
