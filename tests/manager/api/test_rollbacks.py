"""``POST /tasks/{id}/rollback`` on a real app on SQLite: the new task deploys the previous
release of the app to the devices that got the rolled-back one, the documents link both
ways, an open rollout is aborted, the action is audited and rate limited; and the refusals
(409 naming the problem). Also "retry the failed devices, then resume" of a halted rollout.
Rows are moved as agents' reports would move them (``TaskStates``)."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest

from swarmdeploy.manager.errors import RateLimited
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.rollbacks import previous_release
from swarmdeploy.manager.services.task_actions import ActionLimiter
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.records import TaskAppRecord
from tests.manager.conftest import Api

IDS = ["cam-1", "cam-2", "cam-3", "cam-4"]


@pytest.fixture
async def cams(api: Api) -> Api:
    """An app with four targets tagged ``cam``."""
    await api.add_targets(IDS, tags=("cam",))
    return api


def _zip(text: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.txt", text)
    return base64.b64encode(buf.getvalue()).decode()


def release(version: str, **extra: Any) -> dict[str, Any]:
    """A release of app ``detector`` to tag ``cam``."""
    return {
        "app": "detector",
        "version": version,
        "source": {"zip": _zip(version)},
        "deploy": {
            "run": {"commands": [f"./detector-{version}"]},
            "target": {"tags": ["cam"]},
        },
        **extra,
    }


async def _create(api: Api, doc: dict[str, Any]) -> str:
    r = await api.client.post("/tasks", json=doc)
    assert r.status_code == 201, r.text
    task_id: str = r.json()["id"]
    return task_id


async def _report(api: Api, task_id: str, target_id: str, state: TargetState) -> None:
    outcome = await api.services.task_states.report(task_id, target_id, state)
    assert outcome.ok


async def test_rollback_deploys_the_previous_release_to_devices_that_got_the_new_one(
    cams: Api,
) -> None:
    v1 = await _create(cams, release("1.0"))
    for target in IDS:
        await _report(cams, v1, target, TargetState.EXITED)
    staged = {"groups": [{"count": 3, "errorThreshold": 50}, {}]}
    v2 = await _create(cams, release("2.0", rollout=staged))
    await _report(cams, v2, "cam-1", TargetState.RUNNING)
    await _report(cams, v2, "cam-2", TargetState.FAILED)
    await _report(cams, v2, "cam-3", TargetState.INSTALL_FAILED)  # still runs 1.0

    viewer = await cams.headers_for("viewer")
    assert (await cams.client.post(f"/tasks/{v2}/rollback", headers=viewer)).status_code == 403
    r = await cams.client.post(f"/tasks/{v2}/rollback", json={})
    assert r.status_code == 201, r.text
    back = r.json()
    assert back["id"] not in (v1, v2)
    assert back["rollbackOf"] == v2 and back["rolledBackBy"] == []
    assert (back["app"], back["version"]) == ("detector", "1.0")
    assert back["source"]["task"] == v1
    assert back["deploy"]["run"]["commands"] == ["./detector-1.0"]
    assert back["deploy"]["target"]["ids"] == ["cam-1", "cam-2"]
    assert sorted(t["id"] for t in back["targets"]) == ["cam-1", "cam-2"]
    assert back["rollout"] is None and back["signedBy"] is not None
    assert f"rollback of task {v2} to task {v1}" in back["description"]

    doc = (await cams.client.get(f"/tasks/{v2}")).json()
    assert doc["rolledBackBy"] == [back["id"]] and doc["rollbackOf"] is None
    assert doc["rollout"]["state"] == "aborted"
    states = {t["id"]: t["state"] for t in doc["targets"]}
    assert states["cam-4"] == "stopped"  # its group was never announced
    assert (await cams.client.get(f"/orders/{back['id']}")).json()["rollbackOf"] == v2

    audit = await cams.storage.list_audit(page=1, per_page=100)
    entry = next(e for e in audit.items if e.action == "task.rollback")
    assert entry.target == v2


async def test_rolling_back_a_rollback_goes_one_release_further_back(cams: Api) -> None:
    v1 = await _create(cams, release("1.0"))
    await _report(cams, v1, "cam-1", TargetState.RUNNING)
    v2 = await _create(cams, release("2.0"))
    await _report(cams, v2, "cam-1", TargetState.RUNNING)
    r = await cams.client.post(f"/tasks/{v2}/rollback")
    assert r.status_code == 201, r.text
    back = r.json()["id"]
    await _report(cams, back, "cam-1", TargetState.RUNNING)
    # the rollback task is a release too: rolling it back deploys the one before it, v2
    r = await cams.client.post(f"/tasks/{back}/rollback")
    assert r.status_code == 201, r.text
    assert r.json()["source"]["task"] == v2
    r = await cams.client.post(f"/tasks/{v1}/rollback")
    assert r.status_code == 409
    assert "no release before task" in r.json()["error"]


async def test_refusals_name_the_problem(cams: Api) -> None:
    first = await _create(cams, release("1.0"))
    await _report(cams, first, "cam-1", TargetState.RUNNING)
    r = await cams.client.post(f"/tasks/{first}/rollback", json={})
    assert r.status_code == 409
    assert "app detector has no release before task" in r.json()["error"]

    v2 = await _create(cams, release("2.0"))
    await _report(cams, v2, "cam-1", TargetState.DECLINED)
    r = await cams.client.post(f"/tasks/{v2}/rollback", json={})
    assert r.status_code == 409
    assert f"no device got the release of task {v2}" in r.json()["error"]

    other = await _create(
        cams, {"app": "other", "deploy": {"run": {"commands": ["true"]},
                                          "target": {"ids": ["cam-1"]}}}
    )  # fmt: skip
    await _report(cams, other, "cam-1", TargetState.RUNNING)
    r = await cams.client.post(f"/tasks/{other}/rollback")
    assert r.status_code == 409 and "app other has no release" in r.json()["error"]

    assert (await cams.client.post("/tasks/nope-nope-0000/rollback")).status_code == 404
    r = await cams.client.post(f"/tasks/{v2}/rollback", json={"targets": ["cam-1"]})
    assert r.status_code == 422
    assert (await cams.client.get(f"/tasks/{v2}")).json()["rolledBackBy"] == []


async def test_a_release_without_artifacts_rolls_back_without_a_source(cams: Api) -> None:
    def plain(flag: str) -> dict[str, Any]:
        deploy = {"run": {"commands": [f"./tool {flag}"]}, "target": {"tags": ["cam"]}}
        return {"app": "tool", "deploy": deploy}

    await _create(cams, plain("--v1"))
    v2 = await _create(cams, plain("--v2"))
    await _report(cams, v2, "cam-3", TargetState.HEALTHY)
    r = await cams.client.post(f"/tasks/{v2}/rollback")
    assert r.status_code == 201, r.text
    assert r.json()["source"] is None
    assert r.json()["deploy"]["run"]["commands"] == ["./tool --v1"]
    assert [t["id"] for t in r.json()["targets"]] == ["cam-3"]


async def test_task_actions_are_rate_limited_per_operator(cams: Api) -> None:
    hasty = await cams.headers_for("operator", "hasty")
    codes = [
        (await cams.client.post("/tasks/nope-nope-0000/pause", headers=hasty)).status_code
        for _ in range(31)
    ]
    assert codes[:30] == [404] * 30 and codes[30] == 429
    r = await cams.client.post("/tasks/nope-nope-0000/rollback", headers=hasty)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "too many task actions by" in r.json()["error"]
    # another operator is not slowed down
    assert (await cams.client.post("/tasks/nope-nope-0000/pause")).status_code == 404


def test_action_limiter_refills_with_time() -> None:
    now = [0]
    limiter = ActionLimiter(lambda: now[0], burst=2, per_min=60)
    who = Principal(name="ops", role="operator", via="api-key")
    limiter.check(who, "pause")
    limiter.check(who, "pause")
    with pytest.raises(RateLimited) as caught:
        limiter.check(who, "pause")
    assert caught.value.retry_after_s == 1
    now[0] += 1000
    limiter.check(who, "pause")


def test_previous_release_is_the_newest_earlier_one_of_the_same_app() -> None:
    def rec(task_id: str, at: int, app: str = "a") -> TaskAppRecord:
        return TaskAppRecord(task_id, app, created_at=at)

    current = rec("t3", 30)
    releases = [rec("t4", 40), current, rec("t1", 10), rec("t2", 20), rec("x", 25, "b")]
    assert previous_release(releases, current) == rec("t2", 20)
    assert previous_release(releases, rec("t1", 10)) is None
    tie = rec("t5", 30)  # created in the same millisecond: ordered by id
    assert previous_release([*releases, tie], tie) == current


async def test_halted_rollout_retry_failed_devices_then_resume_goes_on(cams: Api) -> None:
    task_id = await _create(cams, release("1.0", rollout={"groups": [{"count": 1}, {}]}))
    await _report(cams, task_id, "cam-1", TargetState.INSTALL_FAILED)
    rollouts = cams.services.tasks.rollouts
    await rollouts.step(task_id)
    assert (await cams.client.get(f"/tasks/{task_id}")).json()["rollout"]["state"] == "halted"

    before = await cams.storage.get_task_target(task_id, "cam-1")
    assert before is not None
    r = await cams.client.post(f"/tasks/{task_id}/retry", json={})
    assert r.status_code == 200, r.text
    row = next(t for t in r.json()["targets"] if t["id"] == "cam-1")
    assert (row["state"], row["attempt"]) == ("pending", before.attempt + 1)
    task = await cams.storage.get_task(task_id)
    assert task is not None
    rows = {r.target_id: r for r in await cams.storage.task_targets(task_id)}
    assert not await rollouts.admits(task, rows["cam-1"])  # halted: not announced yet

    r = await cams.client.post(f"/tasks/{task_id}/resume")
    assert r.status_code == 200 and r.json()["rollout"]["state"] == "running"
    assert await rollouts.admits(task, rows["cam-1"])
    await _report(cams, task_id, "cam-1", TargetState.RUNNING)
    await rollouts.step(task_id)
    doc = (await cams.client.get(f"/tasks/{task_id}")).json()["rollout"]
    assert (doc["state"], doc["currentGroup"]) == ("running", 1)
