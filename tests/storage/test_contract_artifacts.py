"""The storage contract for build artifacts and build times, on every backend."""

from __future__ import annotations

import pytest

from swarmdeploy.storage import NotFound, Storage
from swarmdeploy.storage.records import ArtifactRecord, BuildRecord

from .helpers import task

SHA_A, SHA_B = "a" * 64, "b" * 64


def artifact(
    task_id: str = "k1", sha: str = SHA_A, *, built_at: int = 50, name: str = "artifacts.tar.gz"
) -> ArtifactRecord:
    """An artifact of ``task_id`` built on b1 by two commands."""
    return ArtifactRecord(
        task_id=task_id,
        sha256=sha,
        name=name,
        size_bytes=1234,
        build_host="b1",
        built_at=built_at,
        commands=("gcc -o hello hello.c", "strip hello"),
    )


async def test_artifacts_round_trip_and_a_repeat_is_stored_once(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    assert await storage.add_artifacts([artifact()]) == 1
    assert await storage.add_artifacts([artifact(), artifact(sha=SHA_B)]) == 1
    page = await storage.list_artifacts(task_id="k1")
    assert page.total == 2
    assert list(page.items) == [artifact(), artifact(sha=SHA_B)]
    assert await storage.add_artifacts([]) == 0


async def test_artifacts_of_an_unknown_task_are_refused_and_nothing_is_stored(
    storage: Storage,
) -> None:
    await storage.add_task(task("k1"), [])
    with pytest.raises(NotFound):
        await storage.add_artifacts([artifact(), artifact("ghost", SHA_B)])
    assert (await storage.list_artifacts()).total == 0


async def test_same_bytes_from_two_builds_keep_both_provenances(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.add_task(task("k2"), [])
    await storage.add_artifacts([artifact("k2", built_at=90)])
    await storage.add_artifacts([artifact("k1", built_at=10), artifact("k1", SHA_B, built_at=10)])
    by_digest = await storage.list_artifacts(sha256=SHA_A)
    assert [a.task_id for a in by_digest.items] == ["k1", "k2"]  # oldest build first
    everything = await storage.list_artifacts(page=2, per_page=2)
    assert everything.total == 3 and [a.task_id for a in everything.items] == ["k2"]
    both = await storage.list_artifacts(task_id="k1", sha256=SHA_B)
    assert [(a.task_id, a.sha256) for a in both.items] == [("k1", SHA_B)]
    assert (await storage.list_artifacts(task_id="nobody")).total == 0


async def test_deleting_the_task_deletes_its_artifacts_and_build(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.add_task(task("k2"), [])
    await storage.add_artifacts([artifact("k1"), artifact("k2")])
    await storage.note_build("k1", host="b1", started_at=5)
    await storage.delete_task("k1")
    assert [a.task_id for a in (await storage.list_artifacts()).items] == ["k2"]
    assert await storage.get_build("k1") is None


async def test_build_times_keep_their_first_value(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    assert await storage.get_build("k1") is None
    await storage.note_build("k1", host="b1", started_at=100)
    assert await storage.get_build("k1") == BuildRecord("k1", "b1", 100, None)
    await storage.note_build("k1", host="b1", started_at=150)  # a repeated report
    await storage.note_build("k1", host="b1", finished_at=400)
    await storage.note_build("k1", host="b1", finished_at=500)
    assert await storage.get_build("k1") == BuildRecord("k1", "b1", 100, 400)


async def test_build_finish_without_a_seen_start_keeps_start_unknown(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.note_build("k1", host="b1", finished_at=400)
    assert await storage.get_build("k1") == BuildRecord("k1", "b1", None, 400)
    with pytest.raises(NotFound):
        await storage.note_build("ghost", host="b1", started_at=1)
