"""The large answers written without the response-model pass (``api.answers``) are exactly
what the model would write: validating an answer with its model and dumping it again gives
the same JSON, field order and number types included. Task lists, which count rows in SQL,
agree with the documents of the single tasks."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from swarmdeploy.manager.api.models import ListOf, TargetPublic, TaskPublic
from swarmdeploy.manager.services.tasks import task_json
from swarmdeploy.storage.records import IndoorPosition, Location
from tests.manager.api.test_floorplans import png
from tests.manager.api.test_rollouts import rollout_doc
from tests.manager.api.test_tasks import _zip_b64, deploy_doc
from tests.manager.conftest import Api

_TARGETS = TypeAdapter(ListOf[TargetPublic])
_TASK = TypeAdapter(TaskPublic)

#: Health documents as stored: a full report, odd shapes older or broken agents left.
HEALTHS: list[dict[str, Any] | None] = [
    None,
    {
        "cpu_percent": 12.5,
        "os": "Debian GNU/Linux 12 (bookworm)",
        "arch": "aarch64",
        "agent_version": "0.9.0",
        "position": {"lat": 45, "lon": 7.25, "alt_m": 240, "at_ms": 1700, "source": "gpsd"},
        "__extra__": {
            "transport": "http",
            "insecure_lab": True,
            "security": {
                "mode": "verified",
                "anchors": ["sha256:" + "ab" * 32],
                "revocation_list": 3,
                "terminal": "sandboxed",
                "on_revoked": "stop",
                "sandbox": "bwrap",
                "signer_revoked": ["swift-otter-3f9a"],
                "confinement": {
                    "seccomp": True,
                    "limits": {"mechanism": "rlimit", "processes": 64},
                },
            },
        },
    },
    {"position": {"lat": 91, "lon": 0}, "__extra__": "not a mapping", "os": 7},
    {"nested": {"list": [1, 2.5, "x", None, True]}, "big": 2**70, "tiny": 1e-7, "é": "ü"},
]


def canonical(adapter: TypeAdapter[Any], body: bytes) -> str:
    """``body`` validated by the model and dumped again, as order-preserving JSON text."""
    return json.dumps(json.loads(adapter.dump_json(adapter.validate_json(body), by_alias=True)))


def as_text(body: bytes) -> str:
    return json.dumps(json.loads(body))


async def test_targets_page_is_what_the_model_writes(api: Api) -> None:
    ids = [f"dev-{i}" for i in range(len(HEALTHS) + 2)]
    await api.add_targets(ids, tags=("swarm",))
    for target_id, health in zip(ids, HEALTHS, strict=False):
        await api.storage.touch_target(target_id, seen_at=5, health=health)
    await api.storage.update_target(ids[0], location=Location(45, 7), updated_at=9)
    await api.storage.update_target(ids[1], location=Location(-33.5, 151.25), updated_at=9)
    plan = (
        await api.client.post("/floorplans", params={"name": "hall"}, content=png(4, 4))
    ).json()["id"]
    await api.storage.set_indoor_position(ids[2], IndoorPosition(ids[2], plan, 10, 20.5))
    task = await api.client.post("/tasks", json=deploy_doc())
    assert task.status_code == 201, task.text

    r = await api.client.get("/targets", params={"perPage": 1000})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert as_text(r.content) == canonical(_TARGETS, r.content)
    doc = r.json()
    assert doc["total"] == len(ids) and [t["id"] for t in doc["items"]] == sorted(ids)
    by_id = {t["id"]: t for t in doc["items"]}
    assert by_id[ids[0]]["location"] == {"lat": 45.0, "lon": 7.0}
    assert by_id[ids[1]]["reportedLocation"]["lat"] == 45.0
    assert by_id[ids[1]]["transport"] == "http" and by_id[ids[1]]["insecureLab"] is True
    assert by_id[ids[2]]["indoor"] == {"plan": plan, "x": 10.0, "y": 20.5}
    assert by_id[ids[3]]["health"]["big"] == 2**70
    assert all(t["recentTasks"][0]["task"] == task.json()["id"] for t in doc["items"])


async def _spread(api: Api, task_id: str, states: list[str]) -> None:
    rows = await api.storage.task_targets(task_id)
    for row, state in zip(rows, states, strict=False):
        reason = "disk full" if state in ("failed", "install_failed") else ""
        await api.storage.set_task_target_state(
            task_id, row.target_id, state=state, updated_at=7, reason=reason
        )


async def test_task_document_is_what_the_model_writes_and_what_it_was(api: Api) -> None:
    await api.add_targets([f"d{i:02d}" for i in range(12)], tags=("swarm",))
    await api.add_targets(["builder"], tags=("build",))
    doc = deploy_doc(install={"commands": ["make install"]}, requires={"arch": ["aarch64"]})
    created = await api.client.post("/tasks", json=doc)
    assert created.status_code == 201, created.text
    assert as_text(created.content) == canonical(_TASK, created.content)
    task_id = created.json()["id"]
    await _spread(api, task_id, ["running", "failed", "exited", "failed", "install_failed"])

    r = await api.client.get(f"/tasks/{task_id}")
    assert r.status_code == 200, r.text
    assert as_text(r.content) == canonical(_TASK, r.content)
    before = _TASK.dump_json(
        _TASK.validate_python(task_json(await api.services.tasks.get(task_id), with_targets=True)),
        by_alias=True,
    )
    assert as_text(r.content) == as_text(before)  # the document the model pass wrote
    got = r.json()
    assert got["failures"][0] == {
        "state": "failed",
        "reason": "disk full",
        "count": 2,
        "targets": ["d01", "d03"],
    }
    assert got["deploy"]["target"]["follow"] is False  # the model's defaults are written


async def test_task_list_counts_agree_with_each_task(api: Api) -> None:
    await api.add_targets([f"d{i:02d}" for i in range(9)], tags=("swarm",))
    await api.add_targets(["builder"], tags=("build",))
    plain = (await api.client.post("/tasks", json=deploy_doc())).json()["id"]
    await _spread(api, plain, ["exited", "pending", "running", "exited", "failed", "running"])
    build = {
        "description": "build then deploy",
        "source": {"zip": _zip_b64()},
        "build": {"host": "builder", "commands": ["make"], "artifacts": ["out"]},
        "deploy": {"run": {"commands": ["./out"]}, "target": {"tags": ["swarm"]}},
    }
    built = await api.client.post("/tasks", json=build)
    assert built.status_code == 201, built.text
    built_id = built.json()["id"]
    await _spread(api, built_id, ["building", "pending", "stopped"])
    staged = rollout_doc({"count": 2}, {})
    staged["deploy"]["target"]["tags"] = ["swarm"]
    rollout = await api.client.post("/tasks", json=staged)
    assert rollout.status_code == 201, rollout.text
    untouched = (await api.client.post("/tasks", json=deploy_doc())).json()["id"]

    listed = await api.client.get("/tasks", params={"perPage": 1000})
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert {t["id"] for t in items} == {plain, built_id, rollout.json()["id"], untouched}
    for item in items:
        one = (await api.client.get(f"/tasks/{item['id']}")).json()
        for field in ("status", "match", "stateCounts", "build", "rollout"):
            assert json.dumps(item.get(field)) == json.dumps(one.get(field)), (item["id"], field)
    by_id = {t["id"]: t for t in items}
    assert list(by_id[plain]["stateCounts"]) == ["exited", "pending", "running", "failed"]
    assert by_id[built_id]["build"]["state"] == "building"
    assert by_id[built_id]["match"]["total"] == 9
