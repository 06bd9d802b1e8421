"""``/targets``: list, get, partial update, delete (= revoke) and requests to a target."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmdeploy.manager.dispatch import (
    CommandRequest,
    CommandStopRequest,
    LogRequest,
    MemoryDispatcher,
    StopRequest,
)
from swarmdeploy.storage.records import TargetRecord
from tests.manager.conftest import Api, make_settings, running_api


class RecordingListener:
    """A transport stand-in that records registrations and revocations."""

    def __init__(self) -> None:
        self.registered: list[str] = []
        self.revoked: list[str] = []

    async def target_registered(self, target: TargetRecord) -> None:
        self.registered.append(target.id)

    async def target_revoked(self, target: TargetRecord) -> None:
        self.revoked.append(target.id)


@pytest.fixture
async def fleet(api: Api) -> Api:
    for target_id, tags in (
        ("alpha", ["arm", "lab"]),
        ("beta", ["arm"]),
        ("gamma", ["x86", "lab"]),
    ):
        assert (await api.register(target_id, tags=tags)).status_code == 201
    return api


def _dispatcher(api: Api) -> MemoryDispatcher:
    dispatcher = api.services.dispatcher
    assert isinstance(dispatcher, MemoryDispatcher)
    return dispatcher


async def test_list_filters_tags_with_and(fleet: Api) -> None:
    r = await fleet.client.get("/targets", params={"tags": "arm,lab"})
    assert [t["id"] for t in r.json()["items"]] == ["alpha"]
    r = await fleet.client.get("/targets", params={"tags": "lab"})
    assert [t["id"] for t in r.json()["items"]] == ["alpha", "gamma"]


async def test_list_search_is_substring_of_id(fleet: Api) -> None:
    r = await fleet.client.get("/targets", params={"search": "MM"})
    assert [t["id"] for t in r.json()["items"]] == ["gamma"]


async def test_list_pages_with_total(fleet: Api) -> None:
    r = await fleet.client.get("/targets", params={"page": 2, "perPage": 2})
    doc = r.json()
    assert (doc["total"], doc["page"], doc["perPage"]) == (3, 2, 2)
    assert [t["id"] for t in doc["items"]] == ["gamma"]


async def test_list_beyond_a_hundred_pages_correctly(api: Api) -> None:
    ids = [f"n{i:03d}" for i in range(150)]
    await api.add_targets(ids)
    seen: list[str] = []
    for page in (1, 2):
        doc = (await api.client.get("/targets", params={"page": page, "perPage": 100})).json()
        assert doc["total"] == 150
        seen += [t["id"] for t in doc["items"]]
    assert seen == ids


async def test_get_returns_document_and_unknown_is_404(fleet: Api) -> None:
    doc = (await fleet.client.get("/targets/alpha")).json()
    assert doc["tags"] == ["arm", "lab"] and doc["online"] is False and doc["tokenSet"]
    assert len(doc["publicKey"]) == 40
    r = await fleet.client.get("/targets/nobody")
    assert r.status_code == 404 and r.json() == {
        "error": "target nobody is not found",
        "code": "not_found",
    }


async def test_put_partial_update_keeps_other_fields_and_keys(fleet: Api) -> None:
    before = (await fleet.client.get("/targets/alpha")).json()
    r = await fleet.client.put("/targets/alpha", json={"name": "Robot A"})
    assert r.status_code == 200
    after = r.json()
    assert after["name"] == "Robot A"
    for field in ("tags", "location", "publicKey", "identityKey", "createdAt"):
        assert after[field] == before[field], field
    r = await fleet.client.put("/targets/alpha", json={"tags": ["new"]})
    assert r.json()["name"] == "Robot A" and r.json()["tags"] == ["new"]
    assert r.json()["publicKey"] == before["publicKey"]


async def test_put_location_set_and_cleared(fleet: Api) -> None:
    r = await fleet.client.put("/targets/beta", json={"location": {"lat": 50.7, "lon": 7.1}})
    assert r.json()["location"] == {"lat": 50.7, "lon": 7.1}
    r = await fleet.client.put("/targets/beta", json={"location": None})
    assert r.json()["location"] is None


async def test_bulk_clear_location_clears_only_targets_that_have_one(fleet: Api) -> None:
    await fleet.client.put("/targets/alpha", json={"location": {"lat": 45.1, "lon": 7.7}})
    await fleet.client.put("/targets/gamma", json={"location": {"lat": 50.7, "lon": 7.1}})
    body = {"selection": {"tags": "arm"}, "clearLocation": True}
    r = await fleet.client.post("/targets/bulk", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"matched": 2, "changed": 1, "ids": ["alpha"], "missing": []}
    assert (await fleet.client.get("/targets/alpha")).json()["location"] is None
    gamma = (await fleet.client.get("/targets/gamma")).json()  # not selected: kept
    assert gamma["location"] == {"lat": 50.7, "lon": 7.1}
    audit = (await fleet.client.get("/audit")).json()["items"]
    entry = next(e for e in audit if e["action"] == "target.bulk_update")
    assert entry["details"]["changes"]["clearLocation"] is True


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"clearLocation": True, "location": {"lat": 1.0, "lon": 2.0}},
            "location sets the location and clearLocation clears it",
        ),
        ({"clearLocation": False}, "no change given"),
        ({"clearLocation": "yes"}, "clearLocation"),
    ],
)
async def test_bulk_clear_location_refuses_what_is_unclear(
    fleet: Api, body: dict[str, Any], words: str
) -> None:
    r = await fleet.client.post("/targets/bulk", json={"selection": {"ids": ["alpha"]}, **body})
    assert r.status_code == 422
    assert words in r.text


async def test_put_keys_stay_in_allow_list_after_update(fleet: Api) -> None:
    key = (await fleet.client.get("/targets/alpha")).json()["publicKey"]
    await fleet.client.put("/targets/alpha", json={"tags": ["z"]})
    assert ("alpha", key) in await fleet.storage.target_curve_keys()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"publicKey": "x" * 40}, "$.publicKey"),
        ({"tags": "arm"}, "$.tags"),
        ({"tags": ["bad tag"]}, "$.tags[0]"),
        ({"location": {"lat": 91, "lon": 0}}, "$.location.lat"),
        ({"location": {"lat": 1}}, "$.location.lon"),
        ({"name": 5}, "$.name"),
    ],
)
async def test_put_invalid_body_is_422_naming_field(
    fleet: Api, body: dict[str, Any], path: str
) -> None:
    r = await fleet.client.put("/targets/alpha", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["path"] == path


async def test_put_malformed_json_is_400(fleet: Api) -> None:
    r = await fleet.client.put(
        "/targets/alpha", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "malformed_body"


async def test_put_unknown_target_is_404(api: Api) -> None:
    assert (await api.client.put("/targets/none", json={"name": "x"})).status_code == 404


async def test_tag_assigned_by_api_makes_target_match_tasks(fleet: Api) -> None:
    await fleet.client.put("/targets/beta", json={"tags": ["canary"]})
    doc = {"deploy": {"run": {"commands": ["./a"]}, "target": {"tags": ["canary"]}}}
    r = await fleet.client.post("/tasks", json=doc)
    assert r.status_code == 201 and [t["id"] for t in r.json()["targets"]] == ["beta"]


async def test_delete_unknown_target_is_404(api: Api) -> None:
    r = await api.client.delete("/targets/never-registered")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_delete_revokes_drops_queue_and_tells_listeners(fleet: Api) -> None:
    listener = RecordingListener()
    fleet.services.registry.add_listener(listener)
    await fleet.client.put("/targets/alpha/logs")
    assert (await fleet.client.delete("/targets/alpha")).status_code == 204
    assert listener.revoked == ["alpha"]
    assert _dispatcher(fleet).pending("alpha") == []
    assert (await fleet.client.get("/targets/alpha")).status_code == 404
    assert "alpha" not in [t for t, _ in await fleet.storage.target_curve_keys()]


async def test_delete_needs_admin(fleet: Api) -> None:
    operator = await fleet.headers_for("operator")
    r = await fleet.client.delete("/targets/alpha", headers=operator)
    assert r.status_code == 403


async def test_requests_are_queued_for_the_transport(fleet: Api) -> None:
    operator = await fleet.headers_for("operator", name="ops-1")
    for method, suffix in (("PUT", "logs"), ("PUT", "stop"), ("DELETE", "command")):
        r = await fleet.client.request(method, f"/targets/gamma/{suffix}", headers=operator)
        assert r.status_code == 202 and r.json()["message"]
    r = await fleet.client.put(
        "/targets/gamma/command", json={"command": "uptime"}, headers=operator
    )
    assert r.status_code == 202
    queued = _dispatcher(fleet).pending("gamma")
    assert [type(q) for q in queued] == [
        LogRequest,
        StopRequest,
        CommandStopRequest,
        CommandRequest,
    ]
    assert isinstance(queued[0], LogRequest) and queued[0].if_modified_since == 0
    assert isinstance(queued[1], StopRequest) and queued[1].task_id is None
    assert isinstance(queued[3], CommandRequest) and queued[3].command == "uptime"
    assert "ops-1" in queued[3].operator


async def test_command_is_audited_naming_the_operator_key(fleet: Api) -> None:
    operator = await fleet.headers_for("operator", name="alice")
    await fleet.client.put("/targets/beta/command", json={"command": "rm -rf /tmp/x"},
                           headers=operator)  # fmt: skip
    logs = (
        await fleet.client.get("/logs", params={"target": "beta", "command": "$manager"})
    ).json()
    assert len(logs["items"]) == 1
    line = logs["items"][0]
    assert line["task"] == "terminal" and "key alice" in line["output"]
    assert "(audit #1)" in line["output"]
    audit = (await fleet.client.get("/audit")).json()["items"]
    assert [(e["action"], e["target"], e["details"]["command"]) for e in audit] == [
        ("terminal.command", "beta", "rm -rf /tmp/x")
    ]
    assert len(audit[0]["details"]["keyId"]) == 32  # the key that signed the command
    assert "key alice" in audit[0]["actor"]


@pytest.mark.parametrize(
    ("body", "path"),
    [({}, "$.command"), ({"command": ""}, "$.command"), ({"command": "a\x00b"}, "$.command"),
     ({"command": "ls", "sudo": True}, "$.sudo")],
)  # fmt: skip
async def test_command_body_validated(fleet: Api, body: dict[str, Any], path: str) -> None:
    r = await fleet.client.put("/targets/beta/command", json=body)
    assert r.status_code == 422 and r.json()["path"] == path


async def test_requests_to_unknown_target_are_404(api: Api) -> None:
    for method, suffix in (("PUT", "logs"), ("PUT", "stop"), ("DELETE", "command")):
        assert (await api.client.request(method, f"/targets/x/{suffix}")).status_code == 404
    assert (await api.client.put("/targets/x/command", json={"command": "ls"})).status_code == 404


async def test_terminal_needs_operator(fleet: Api) -> None:
    viewer = await fleet.headers_for("viewer")
    r = await fleet.client.put("/targets/beta/command", json={"command": "id"}, headers=viewer)
    assert r.status_code == 403
    assert _dispatcher(fleet).pending("beta") == []


@pytest.fixture
async def tiny_queue(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(make_settings(tmp_path, dispatch_queue_size=1)) as running:
        assert (await running.register("solo")).status_code == 201
        yield running


async def test_full_request_queue_is_503_with_retry_after(tiny_queue: Api) -> None:
    assert (await tiny_queue.client.put("/targets/solo/logs")).status_code == 202
    r = await tiny_queue.client.put("/targets/solo/stop")
    assert r.status_code == 503 and r.json()["code"] == "unavailable"
    assert int(r.headers["retry-after"]) > 0


async def test_targets_show_their_newest_tasks_in_the_list_and_alone(fleet: Api) -> None:
    listed = (await fleet.client.get("/targets")).json()["items"]
    assert all(t["recentTasks"] == [] for t in listed)
    ids = []
    for i in range(7):
        doc = {
            "description": f"r{i}",
            "deploy": {"run": {"commands": ["./a"]}, "target": {"ids": ["beta"]}},
        }
        ids.append((await fleet.client.post("/tasks", json=doc)).json()["id"])
    created = {i: (await fleet.client.get(f"/tasks/{i}")).json()["createdAt"] for i in ids}
    newest = sorted(ids, key=lambda i: (created[i], i), reverse=True)[:5]  # ties: by id
    one = (await fleet.client.get("/targets/beta")).json()
    assert [r["task"] for r in one["recentTasks"]] == newest
    assert one["recentTasks"][0]["state"] == "pending" and one["recentTasks"][0]["role"] == "deploy"
    listed = {t["id"]: t for t in (await fleet.client.get("/targets")).json()["items"]}
    assert [r["task"] for r in listed["beta"]["recentTasks"]] == newest
    assert listed["alpha"]["recentTasks"] == []


async def test_target_task_history_pages_newest_first_with_descriptions(fleet: Api) -> None:
    assert (await fleet.client.get("/targets/nobody/tasks")).status_code == 404
    assert (await fleet.client.get("/targets/beta/tasks")).json()["total"] == 0
    ids = []
    for i in range(3):
        doc = {
            "description": f"h{i}",
            "deploy": {"run": {"commands": ["./a"]}, "target": {"ids": ["beta"]}},
        }
        ids.append((await fleet.client.post("/tasks", json=doc)).json()["id"])
    created = {i: (await fleet.client.get(f"/tasks/{i}")).json()["createdAt"] for i in ids}
    newest = sorted(ids, key=lambda i: (created[i], i), reverse=True)
    first = (await fleet.client.get("/targets/beta/tasks", params={"perPage": 2})).json()
    assert first["total"] == 3 and [r["task"] for r in first["items"]] == newest[:2]
    row = first["items"][0]
    assert row["description"] == f"h{ids.index(newest[0])}" and row["state"] == "pending"
    assert row["createdAt"] == created[newest[0]] and row["createdBy"]
    second = (
        await fleet.client.get("/targets/beta/tasks", params={"perPage": 2, "page": 2})
    ).json()
    assert [r["task"] for r in second["items"]] == newest[2:]
    viewer = await fleet.headers_for("viewer")
    assert (await fleet.client.get("/targets/beta/tasks", headers=viewer)).status_code == 200
