"""Task service logic on the in-memory storage: matching, expiry, stop edge cases, reuse of
earlier builds (``source.task``) and archives uploaded apart from the descriptor."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from swarmdeploy.manager.dispatch import LogRequest
from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.manager.events import Event
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.storage.records import ArtifactRecord
from tests.manager.services.conftest import World

OPERATOR = Principal(name="ops", role="operator", via="api-key", key_id="k")


def deploy(
    ids: list[str] | None = None, tags: list[str] | None = None, **extra: object
) -> dict[str, object]:
    target = {k: v for k, v in (("ids", ids), ("tags", tags)) if v}
    return {"deploy": {"install": {"commands": ["true"]}, "target": target}, **extra}


async def test_match_by_id_or_any_tag_records_how(world: World) -> None:
    await world.add_targets(["a", "b"], tags=("x",))
    await world.add_targets(["c"], tags=("y",))
    await world.add_targets(["d"])
    view = await world.tasks.create(deploy(ids=["d", "ghost"], tags=["y", "z"]), created_by="me")
    assert [r.target_id for r in view.targets] == ["c", "d"]
    assert view.record.match_ids == ("d",) and view.record.match_tags == ("y",)


async def test_thousands_of_matches_without_paging_limit(world: World) -> None:
    ids = [f"n{i:05d}" for i in range(2500)]
    await world.add_targets(ids, tags=("fleet",))
    view = await world.tasks.create(deploy(tags=["fleet"]), created_by="me")
    assert len(view.targets) == 2500


async def test_expired_pending_rows_become_expired_and_are_published(world: World) -> None:
    await world.add_targets(["a", "b"])
    sub = world.events.subscribe(["taskUpdated"])
    view = await world.tasks.create(deploy(ids=["a", "b"], expiresIn=60), created_by="me")
    await world.storage.set_task_target_state(view.record.id, "b", state="running", updated_at=1)
    assert await world.tasks.expire() == 0
    world.clock.now += 60_001
    assert await world.tasks.expire() == 1
    event = await sub.get()
    assert isinstance(event, Event)
    assert (event.payload["id"], event.payload["state"]) == ("a", "expired")
    states = {r.target_id: r.state for r in (await world.tasks.get(view.record.id)).targets}
    assert states == {"a": "expired", "b": "running"}


async def test_stop_reports_targets_whose_queue_is_full(world: World) -> None:
    await world.add_targets(["a", "b"])
    view = await world.tasks.create(deploy(ids=["a", "b"]), created_by="me")
    for target in ("a", "b"):
        await world.storage.set_task_target_state(view.record.id, target, state="running",
                                                  updated_at=1)  # fmt: skip
    await world.dispatcher.submit("b", LogRequest(0))  # b's queue (size 1) is now full
    outcome = await world.tasks.stop(view.record.id, OPERATOR)
    assert (outcome.stopped, outcome.requested, outcome.refused) == (0, 1, ["b"])


async def test_stop_skips_final_rows(world: World) -> None:
    await world.add_targets(["a"])
    view = await world.tasks.create(deploy(ids=["a"]), created_by="me")
    await world.storage.set_task_target_state(view.record.id, "a", state="exited", updated_at=1)
    outcome = await world.tasks.stop(view.record.id, OPERATOR)
    assert (outcome.stopped, outcome.requested, outcome.refused) == (0, 0, [])
    assert (await world.tasks.get(view.record.id)).record.stopped_at == world.clock.now


async def test_status_follows_rows(world: World) -> None:
    await world.add_targets(["a", "b"])
    view = await world.tasks.create(deploy(ids=["a", "b"]), created_by="me")
    task_id = view.record.id
    await world.storage.set_task_target_state(task_id, "a", state="running", updated_at=1)
    await world.storage.set_task_target_state(task_id, "b", state="running", updated_at=1)
    assert (await world.tasks.get(task_id)).status.value == "running"
    await world.storage.set_task_target_state(task_id, "b", state="failed", updated_at=2)
    await world.storage.set_task_target_state(task_id, "a", state="exited", updated_at=2)
    assert (await world.tasks.get(task_id)).status.value == "failed"


async def test_descriptor_error_keeps_protocol_code(world: World) -> None:
    with pytest.raises(InvalidInput) as info:
        await world.tasks.create({"deploy": {"run": {"commands": [""]}}}, created_by="me")
    assert info.value.code == "invalid_descriptor"


# -- builds: source.task and uploaded archives (issue 4) ----------------------------------------


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.c", "int main(void) { return 0; }\n")
    return buf.getvalue()


def _build(**extra: object) -> dict[str, object]:
    build = {"host": "b1", "commands": ["make"], "artifacts": ["hello"]}
    return {"build": build, **deploy(ids=["d1"]), **extra}


async def test_source_task_of_a_build_without_artifacts_is_refused_naming_its_state(
    world: World,
) -> None:
    await world.add_targets(["b1", "d1"])
    source = {"zip": base64.b64encode(_zip_bytes()).decode()}
    built = await world.tasks.create(_build(source=source), created_by="me")
    with pytest.raises(InvalidInput) as info:
        await world.tasks.create(deploy(ids=["d1"], source={"task": built.record.id}),
                                 created_by="me")  # fmt: skip
    assert info.value.path == "$.source.task"
    assert info.value.message == (
        f"task {built.record.id} has no build artifacts (its build is pending); "
        "reuse a task whose build is built"
    )
    record = ArtifactRecord(built.record.id, "a" * 64, "artifacts.tar.gz", 3, "b1", 5)
    await world.storage.add_artifacts([record])
    again = await world.tasks.create(deploy(ids=["d1"], source={"order": built.record.id}),
                                     created_by="me")  # fmt: skip
    # a reuse of the reuse deploys the origin's artifacts; the stored task names the origin
    third = await world.tasks.create(deploy(ids=["d1"], source={"task": again.record.id}),
                                     created_by="me")  # fmt: skip
    assert third.record.descriptor["source"] == {"task": built.record.id}
    assert third.record.build_host is None and third.build is None


async def test_uploaded_archive_stands_for_source_zip_of_a_build(
    world: World, tmp_path: Path
) -> None:
    await world.add_targets(["b1", "d1"])
    archive = tmp_path / "src.zip"
    archive.write_bytes(_zip_bytes())
    view = await world.tasks.create(_build(), created_by="me", archive=archive)
    assert view.source_size == len(_zip_bytes()) and not archive.exists()  # moved into blobs
    assert "source" not in view.record.descriptor or "zip" not in view.record.descriptor["source"]


@pytest.mark.parametrize(
    ("extra", "content", "path", "words"),
    [
        ({"source": {"zip": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}, b"PK\x05\x06",
         "$.source.zip", "remove source.zip"),
        ({"source": {"task": "earlier"}}, b"PK\x05\x06", "$.source.task", "do not upload"),
        ({}, b"just text", "multipart.archive", "zip or tar.gz file"),
    ],
)  # fmt: skip
async def test_uploaded_archive_conflicts_and_bad_archives_are_422(
    world: World,
    tmp_path: Path,
    extra: dict[str, object],
    content: bytes,
    path: str,
    words: str,
) -> None:
    await world.add_targets(["b1", "d1"])
    archive = tmp_path / "src.bin"
    archive.write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        await world.tasks.create(_build(**extra), created_by="me", archive=archive)
    assert info.value.path == path and words in info.value.message
