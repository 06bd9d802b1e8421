"""The storage contract for ``referenced_digests`` (blob garbage collection), on every backend."""

from __future__ import annotations

import dataclasses
import hashlib

from swarmdeploy.storage import Storage
from swarmdeploy.storage.records import ArtifactRecord, TaskSignatureRecord, UploadRecord
from tests.storage.helpers import task


def digest(name: str) -> str:
    """A SHA-256 hex digest named for the test."""
    return hashlib.sha256(name.encode()).hexdigest()


def upload(task_id: str, sha256: str, *, complete: bool = False) -> UploadRecord:
    return UploadRecord(
        task_id=task_id, sha256=sha256, name="out.tar.gz", size_bytes=10, chunk_bytes=4,
        created_at=1000, next_index=3 if complete else 1, complete=complete,
    )  # fmt: skip


def artifact(task_id: str, sha256: str) -> ArtifactRecord:
    return ArtifactRecord(task_id, sha256, "artifacts.tar.gz", 10, "builder", 2000, ("make",))


def signature(task_id: str, names: list[str], *, sequence: int = 1) -> TaskSignatureRecord:
    """A signed deploy manifest (canonical JSON) naming the artifacts ``names``."""
    listed = ",".join(f'{{"name":"a","sha256":"{d}","size_bytes":10}}' for d in names)
    return TaskSignatureRecord(
        task_id=task_id,
        kind="deploy",
        manifest=f'{{"artifacts":[{listed}],"task_id":"{task_id}"}}'.encode(),
        signature=bytes(64),
        certificate=b"{}",
        sequence=sequence,
        key_id="k" * 32,
        signed_at=1000,
    )


async def test_no_digests_reads_nothing(storage: Storage) -> None:
    assert await storage.referenced_digests([]) == set()


async def test_task_archive_is_referenced_until_the_task_is_deleted(storage: Storage) -> None:
    archive, other = digest("archive"), digest("other")
    await storage.add_task(dataclasses.replace(task("t1"), source_digest=archive), [])
    await storage.add_task(task("t2"), [])
    assert await storage.referenced_digests([archive, other, archive]) == {archive}
    await storage.delete_task("t1")
    assert await storage.referenced_digests([archive, other]) == set()


async def test_archive_shared_by_two_tasks_stays_referenced_by_the_other(
    storage: Storage,
) -> None:
    archive = digest("shared")
    for task_id in ("t1", "t2"):
        await storage.add_task(dataclasses.replace(task(task_id), source_digest=archive), [])
    await storage.delete_task("t1")
    assert await storage.referenced_digests([archive]) == {archive}


async def test_upload_records_complete_or_not_are_references(storage: Storage) -> None:
    done, partial, gone = digest("done"), digest("partial"), digest("gone")
    await storage.add_task(task("t1"), [])
    await storage.start_upload(upload("t1", done, complete=True))
    await storage.start_upload(upload("t1", partial))
    await storage.start_upload(upload("t1", gone))
    assert await storage.delete_upload("t1", gone)
    assert await storage.referenced_digests([done, partial, gone]) == {done, partial}
    await storage.delete_task("t1")
    assert await storage.referenced_digests([done, partial]) == set()


async def test_artifact_catalogue_entry_is_a_reference(storage: Storage) -> None:
    built = digest("built")
    await storage.add_task(task("t1"), [])
    await storage.start_upload(upload("t1", built, complete=True))
    await storage.add_artifacts([artifact("t1", built)])
    assert await storage.delete_upload("t1", built)
    assert await storage.referenced_digests([built]) == {built}
    await storage.delete_task("t1")
    assert await storage.referenced_digests([built]) == set()


async def test_manifest_of_a_live_reusing_task_keeps_the_reused_artifacts(
    storage: Storage,
) -> None:
    built, unrelated = digest("built"), digest("unrelated")
    await storage.add_task(dataclasses.replace(task("builder"), build_host="b1"), [])
    await storage.start_upload(upload("builder", built, complete=True))
    reuse = task("reuse")
    reuse = dataclasses.replace(reuse, descriptor={"source": {"task": "builder"}})
    await storage.add_task(reuse, [])
    await storage.add_task_signature(signature("reuse", [built]))
    await storage.delete_task("builder")
    assert await storage.referenced_digests([built, unrelated]) == {built}
    await storage.delete_task("reuse")  # its signature stays, but no longer counts
    assert await storage.get_task_signature("reuse", "deploy") is not None
    assert await storage.referenced_digests([built]) == set()


async def test_many_digests_are_answered_together(storage: Storage) -> None:
    names = [digest(f"d{i}") for i in range(450)]
    await storage.add_task(dataclasses.replace(task("t1"), source_digest=names[0]), [])
    await storage.add_task(task("t2"), [])
    await storage.start_upload(upload("t2", names[230]))
    await storage.add_artifacts([artifact("t2", names[449])])
    await storage.add_task(task("t3"), [])
    await storage.add_task_signature(signature("t3", [names[201], names[399]]))
    found = await storage.referenced_digests(names)
    assert found == {names[0], names[230], names[449], names[201], names[399]}


async def test_digest_inside_a_longer_hex_string_of_a_manifest_counts(storage: Storage) -> None:
    inner = digest("inner")
    await storage.add_task(task("t1"), [])
    await storage.add_task_signature(signature("t1", ["0a1b" + inner + "c2d3"]))
    assert await storage.referenced_digests([inner, digest("outer")]) == {inner}
