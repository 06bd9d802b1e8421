"""Staged rollouts through ``/tasks`` on a real app on SQLite: the ``rollout`` document,
the announcement gate, moving on, halting, and pause/resume/abort with their roles, errors
and audit entries. Rows are moved as agents' reports would move them (``TaskStates``)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from swarmdeploy.manager.events import Event
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.records import RolloutRecord
from tests.manager.conftest import Api

IDS = ["cam-1", "cam-2", "cam-3", "cam-4"]


def rollout_doc(*groups: dict[str, Any]) -> dict[str, Any]:
    """A deploy to tag ``cam`` with the given rollout groups."""
    return {
        "deploy": {"run": {"commands": ["./app"]}, "target": {"tags": ["cam"]}},
        "rollout": {"groups": list(groups)},
    }


@pytest.fixture
async def cams(api: Api) -> Api:
    """An app with four targets tagged ``cam`` (cam-4 also ``lab``)."""
    await api.add_targets(IDS[:3], tags=("cam",))
    await api.add_targets(IDS[3:], tags=("cam", "lab"))
    return api


async def _create(api: Api, *groups: dict[str, Any]) -> dict[str, Any]:
    r = await api.client.post("/tasks", json=rollout_doc(*groups))
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def _admitted(api: Api, task_id: str) -> list[str]:
    rollouts = api.services.tasks.rollouts
    task = await api.storage.get_task(task_id)
    assert task is not None
    rows = await api.storage.task_targets(task_id)
    return [r.target_id for r in rows if await rollouts.admits(task, r)]


async def _step(api: Api, task_id: str) -> RolloutRecord:
    """Count the rollout now (the background job may have done so already) and read it."""
    await api.services.tasks.rollouts.step(task_id)
    record = await api.storage.get_rollout(task_id)
    assert record is not None
    return record


async def _report(api: Api, task_id: str, target_id: str, state: TargetState) -> None:
    outcome = await api.services.task_states.report(task_id, target_id, state)
    assert outcome.ok


async def test_groups_are_fixed_at_creation_and_gate_announcements(cams: Api) -> None:
    doc = await _create(cams, {"tags": ["lab"]}, {"count": 2, "successThreshold": 50}, {})
    task_id = doc["id"]
    rollout = doc["rollout"]
    assert (rollout["state"], rollout["currentGroup"], rollout["reason"]) == ("running", 0, "")
    assert [(g["name"], g["size"], g["notAnnounced"]) for g in rollout["groups"]] == [
        ("1", 1, 1),
        ("2", 2, 2),
        ("3", 1, 1),
    ]
    assert await _admitted(cams, task_id) == ["cam-4"]
    # a device registered later is not pulled in
    await cams.add_targets(["cam-9"], tags=("cam", "lab"))
    stored = await cams.storage.get_rollout(task_id)
    assert stored is not None and stored.groups == (("cam-4",), ("cam-1", "cam-2"), ("cam-3",))

    assert (await _step(cams, task_id)).current == 0  # nothing succeeded yet
    await _report(cams, task_id, "cam-4", TargetState.RUNNING)
    assert (await _step(cams, task_id)).current == 1
    assert await _admitted(cams, task_id) == ["cam-1", "cam-2", "cam-4"]
    await _report(cams, task_id, "cam-1", TargetState.EXITED)
    assert (await _step(cams, task_id)).current == 2  # 50 % of group 2 is enough
    await _report(cams, task_id, "cam-3", TargetState.RUNNING)
    assert (await _step(cams, task_id)).state == "completed"
    assert await _admitted(cams, task_id) == IDS
    got = (await cams.client.get(f"/tasks/{task_id}")).json()["rollout"]
    assert got["state"] == "completed"
    assert [g["succeeded"] for g in got["groups"]] == [1, 1, 1]


async def test_error_threshold_crossed_halts_with_the_reason(cams: Api) -> None:
    doc = await _create(cams, {"count": 2, "errorThreshold": 40}, {})
    task_id = doc["id"]
    await _report(cams, task_id, "cam-1", TargetState.INSTALL_FAILED)
    assert (await _step(cams, task_id)).state == "halted"  # 1 of 2: 50 % > 40 %
    got = (await cams.client.get(f"/tasks/{task_id}")).json()["rollout"]
    assert got["state"] == "halted"
    assert "group 1: 1 of 2 target(s) failed" in got["reason"]
    assert "error threshold of 40 %" in got["reason"]
    assert got["groups"][0]["failed"] == 1
    assert await _admitted(cams, task_id) == []
    await _report(cams, task_id, "cam-2", TargetState.RUNNING)
    assert (await _step(cams, task_id)).state == "halted"  # halted stays halted


async def test_pause_resume_abort_are_operator_actions_and_audited(cams: Api) -> None:
    doc = await _create(cams, {"count": 1}, {})
    task_id = doc["id"]
    viewer = await cams.headers_for("viewer")
    r = await cams.client.post(f"/tasks/{task_id}/pause", headers=viewer)
    assert r.status_code == 403

    r = await cams.client.post(f"/tasks/{task_id}/pause")
    assert r.status_code == 200, r.text
    assert r.json()["rollout"]["state"] == "paused"
    assert "paused by" in r.json()["rollout"]["reason"]
    assert await _admitted(cams, task_id) == []
    assert (await cams.client.post(f"/tasks/{task_id}/pause")).status_code == 409
    await _report(cams, task_id, "cam-1", TargetState.RUNNING)
    assert (await _step(cams, task_id)).state == "paused"  # paused: stays

    r = await cams.client.post(f"/tasks/{task_id}/resume")
    assert r.status_code == 200, r.text
    assert r.json()["rollout"]["state"] == "running"
    assert (await cams.client.post(f"/tasks/{task_id}/resume")).status_code == 409

    r = await cams.client.post(f"/tasks/{task_id}/abort")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rollout"]["state"] == "aborted"
    states = {t["id"]: (t["state"], t["reason"]) for t in body["targets"]}
    assert states["cam-1"] == ("running", "")
    assert {states[t] for t in IDS[1:]} == {("stopped", "rollout aborted")}
    assert (await cams.client.post(f"/tasks/{task_id}/abort")).status_code == 409
    assert (await cams.client.post(f"/orders/{task_id}/resume")).status_code == 409

    audit = await cams.storage.list_audit(page=1, per_page=100)
    actions = [(e.action, e.target) for e in audit.items]
    for action in ("task.pause", "task.resume", "task.abort"):
        assert (action, task_id) in actions


async def test_actions_on_tasks_without_rollout_or_unknown(cams: Api) -> None:
    doc = {"deploy": {"run": {"commands": ["./app"]}, "target": {"tags": ["cam"]}}}
    r = await cams.client.post("/tasks", json=doc)
    assert r.status_code == 201 and r.json()["rollout"] is None
    task_id = r.json()["id"]
    assert await _admitted(cams, task_id) == IDS
    r = await cams.client.post(f"/tasks/{task_id}/pause")
    assert r.status_code == 409 and "no rollout" in r.text
    assert (await cams.client.post("/tasks/nope-nope-0000/abort")).status_code == 404


async def test_group_id_that_is_not_a_target_is_a_422_naming_it(cams: Api) -> None:
    r = await cams.client.post("/tasks", json=rollout_doc({"ids": ["cam-1", "elsewhere"]}))
    assert r.status_code == 422
    assert r.json()["path"] == "$.rollout.groups[0].ids[1]"
    assert "elsewhere" in r.json()["error"]
    assert (await cams.client.get("/tasks")).json()["total"] == 0


async def test_gate_refuses_rows_of_a_rollout_not_stored_yet(cams: Api) -> None:
    doc = {"deploy": {"run": {"commands": ["./app"]}, "target": {"tags": ["cam"]}}}
    task_id = (await cams.client.post("/tasks", json=doc)).json()["id"]
    task = await cams.storage.get_task(task_id)
    assert task is not None
    row = (await cams.storage.task_targets(task_id))[0]
    rollouts = cams.services.tasks.rollouts
    assert await rollouts.admits(task, row)
    # between storing the task and storing its rollout (or after a concurrent delete)
    staged = dataclasses.replace(
        task, descriptor={**task.descriptor, "rollout": {"groups": [{"count": 1}]}}
    )
    assert not await rollouts.admits(staged, row)


async def test_changes_are_published_as_rollout_updated(cams: Api) -> None:
    sub = cams.services.events.subscribe(["rolloutUpdated"])
    try:
        task_id = (await _create(cams, {"count": 1}, {}))["id"]
        assert (await cams.client.post(f"/tasks/{task_id}/pause")).status_code == 200
        async with asyncio.timeout(10):
            event = await sub.get()
        assert isinstance(event, Event)
        assert event.task == task_id
        assert event.payload["task"] == task_id and event.payload["state"] == "paused"
        assert event.payload["currentGroup"] == 0
    finally:
        sub.close()
