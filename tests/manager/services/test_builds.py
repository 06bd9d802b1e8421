"""The build stage on the manager: artifacts recorded with provenance, a failed build
deploys nothing, build times in the task document."""

from __future__ import annotations

import base64
import io
import zipfile

from swarmdeploy.manager.services.builds import BuildRecorder, build_stage_json
from swarmdeploy.manager.services.tasks import TaskView, task_json
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.records import UploadRecord
from tests.manager.services.conftest import World

SHA_A, SHA_B = "a" * 64, "b" * 64


def zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.c", "int main(void) { return 0; }\n")
    return base64.b64encode(buf.getvalue()).decode()


def build_doc(**extra: object) -> dict[str, object]:
    """Build hello on b1, deploy it to the armhf targets."""
    return {
        "source": {"zip": zip_b64()},
        "build": {"host": "b1", "commands": ["gcc -o hello hello.c"], "artifacts": ["hello"]},
        "deploy": {"run": {"commands": ["./hello"]}, "target": {"tags": ["armhf"]}},
        **extra,
    }


async def built_task(world: World) -> TaskView:
    await world.add_targets(["b1"])
    await world.add_targets(["d1", "d2"], tags=("armhf",))
    return await world.tasks.create(build_doc(), created_by="me")


def recorder(world: World) -> BuildRecorder:
    return BuildRecorder(world.storage, states=world.states, clock=world.clock)


async def upload(world: World, task_id: str, sha: str, *, complete: bool) -> None:
    record = UploadRecord(task_id, sha, "artifacts.tar.gz", 300, 256, created_at=1)
    await world.storage.start_upload(record)
    await world.storage.advance_upload(task_id, sha, expected_next=0, next_index=1)
    if complete:
        await world.storage.advance_upload(task_id, sha, expected_next=1, next_index=2,
                                           complete=True)  # fmt: skip


async def test_delivered_records_complete_uploads_with_provenance_once(world: World) -> None:
    view = await built_task(world)
    task_id = view.record.id
    await upload(world, task_id, SHA_A, complete=True)
    await upload(world, task_id, SHA_B, complete=False)
    records = await recorder(world).delivered(task_id, "b1")
    assert [(r.sha256, r.build_host, r.commands, r.built_at) for r in records] == [
        (SHA_A, "b1", ("gcc -o hello hello.c",), world.clock.now)
    ]
    world.clock.now += 5000
    await recorder(world).delivered(task_id, "b1")  # the agent repeated its report
    stored = await world.storage.list_artifacts(task_id=task_id)
    assert [(a.sha256, a.built_at) for a in stored.items] == [(SHA_A, world.clock.now - 5000)]


async def test_failed_build_stops_every_waiting_deploy_target_with_the_reason(
    world: World,
) -> None:
    view = await built_task(world)
    task_id = view.record.id
    await world.storage.set_task_target_state(task_id, "b1", state="build_failed", updated_at=2,
                                              reason="build command 'gcc' exited 1")  # fmt: skip
    assert await recorder(world).ended(task_id, "b1", TargetState.BUILD_FAILED, "gcc exited 1") == 2
    assert await recorder(world).ended(task_id, "b1", TargetState.BUILD_FAILED, "again") == 0
    after = await world.tasks.get(task_id)
    deploys = {(r.target_id, r.state, r.reason) for r in after.targets if r.role == "deploy"}
    assert deploys == {
        ("d1", "stopped", "build failed: gcc exited 1"),
        ("d2", "stopped", "build failed: gcc exited 1"),
    }
    assert after.status.value == "failed"


async def test_declined_build_names_the_host_declining(world: World) -> None:
    view = await built_task(world)
    await recorder(world).ended(view.record.id, "b1", TargetState.DECLINED, "not enough disk")
    reasons = {r.reason for r in (await world.tasks.get(view.record.id)).targets[1:]}
    assert reasons == {"build host declined: not enough disk"}


async def test_task_document_shows_build_stage_with_times_and_artifacts(world: World) -> None:
    view = await built_task(world)
    task_id = view.record.id
    doc = task_json(view, with_targets=True)
    assert doc["build"] == {
        "host": "b1", "commands": ["gcc -o hello hello.c"], "artifactPaths": ["hello"],
        "state": "pending", "reason": "", "startedAt": None, "finishedAt": None,
        "durationMs": None, "artifacts": [],
    }  # fmt: skip
    start = world.clock.now
    await recorder(world).started(task_id, "b1")
    await upload(world, task_id, SHA_A, complete=True)
    world.clock.now += 1500
    await recorder(world).delivered(task_id, "b1")
    await world.storage.set_task_target_state(task_id, "b1", state="built", updated_at=1)
    build = task_json(await world.tasks.get(task_id), with_targets=True)["build"]
    assert (build["state"], build["startedAt"], build["finishedAt"]) == (
        "built",
        start,
        start + 1500,
    )
    assert build["durationMs"] == 1500
    assert build["artifacts"] == [{"name": "artifacts.tar.gz", "sha256": SHA_A, "size": 300}]


async def test_final_build_without_recorded_times_falls_back_to_the_row(world: World) -> None:
    view = await built_task(world)
    await world.storage.set_task_target_state(view.record.id, "b1", state="build_failed",
                                              updated_at=777)  # fmt: skip
    build = task_json(await world.tasks.get(view.record.id), with_targets=False)["build"]
    assert (build["startedAt"], build["finishedAt"], build["durationMs"]) == (None, 777, None)
    assert build_stage_json(view.record, None) is not None


async def test_recorder_ignores_a_deleted_task(world: World) -> None:
    view = await built_task(world)
    await world.storage.delete_task(view.record.id)
    assert await recorder(world).delivered(view.record.id, "b1") == []
    assert await recorder(world).ended(view.record.id, "b1", TargetState.BUILD_FAILED, "") == 0
    await recorder(world).started(view.record.id, "b1")
    assert await world.storage.get_build(view.record.id) is None
