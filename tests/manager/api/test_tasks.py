"""``/tasks`` and ``/orders`` against a real app on SQLite."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmdeploy.manager.dispatch import MemoryDispatcher, StopRequest
from tests.manager.conftest import Api, make_settings, running_api

#: The original tool's five example orders, verbatim (cpswarm-original.md §7.3).
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "original"


def _zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.sh", "echo hello\n")
    return base64.b64encode(buf.getvalue()).decode()


def deploy_doc(**deploy: Any) -> dict[str, Any]:
    """A minimal valid deploy descriptor targeting tag ``swarm``."""
    section: dict[str, Any] = {"run": {"commands": ["./app"]}, "target": {"tags": ["swarm"]}}
    section.update(deploy)
    return {"description": "test deployment", "deploy": section}


@pytest.fixture
async def fleet(api: Api) -> Api:
    """An app with targets: dev-1, dev-2 (tag swarm), board (tag dev), my-laptop (builder)."""
    for target_id, tags in (
        ("dev-1", ["swarm"]),
        ("dev-2", ["swarm", "arm"]),
        ("board", ["dev"]),
        ("my-laptop", ["builder"]),
    ):
        assert (await api.register(target_id, tags=tags)).status_code == 201
    return api


async def test_create_json_answers_201_with_id_and_pending_targets(fleet: Api) -> None:
    r = await fleet.client.post("/tasks", json=deploy_doc())
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["id"] and doc["status"] == "pending"
    assert doc["match"] == {"ids": [], "tags": ["swarm"], "total": 2}
    assert [(t["id"], t["state"], t["role"]) for t in doc["targets"]] == [
        ("dev-1", "pending", "deploy"),
        ("dev-2", "pending", "deploy"),
    ]
    got = await fleet.client.get(f"/tasks/{doc['id']}")
    assert got.status_code == 200 and got.json()["id"] == doc["id"]
    # Signed with the caller's operator key, made on first use (bootstrap admin key here).
    signed_by = got.json()["signedBy"]
    assert signed_by == doc["signedBy"] and signed_by["keyId"]
    assert got.json()["sequence"] == doc["sequence"] >= 1
    assert got.json()["sandbox"] == {
        "network": False,
        "devices": [],
        "paths": [],
        "groups": [],
        "limits": {},
    }


@pytest.mark.parametrize("content_type", ["application/yaml", "text/yaml"])
async def test_create_yaml_body_accepted(fleet: Api, content_type: str) -> None:
    body = yaml.safe_dump(deploy_doc())
    r = await fleet.client.post("/tasks", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 201, r.text
    assert r.json()["deploy"]["run"]["commands"] == ["./app"]


@pytest.mark.parametrize(
    "name", ["simple.yml", "zip-build-and-deploy.yml", "zip-deploy-python.yml", "zip-deploy.yml"]
)
async def test_original_examples_accepted_by_orders_unchanged(fleet: Api, name: str) -> None:
    raw = (EXAMPLES / name).read_bytes()
    r = await fleet.client.post("/orders", content=raw, headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    again = await fleet.client.post(
        "/tasks", content=raw, headers={"Content-Type": "application/yaml"}
    )
    assert again.status_code == 201, again.text


async def test_original_example_with_source_paths_refused_clearly(fleet: Api) -> None:
    raw = (EXAMPLES / "wiki-simple-scenario.yml").read_bytes()
    r = await fleet.client.post("/orders", content=raw)
    assert r.status_code == 422
    assert r.json()["path"] == "$.source.paths"
    assert "source.zip" in r.json()["error"]


async def test_build_and_deploy_example_has_build_row_first(fleet: Api) -> None:
    raw = (EXAMPLES / "zip-build-and-deploy.yml").read_bytes()
    doc = (await fleet.client.post("/orders", content=raw)).json()
    assert doc["targets"][0] == {**doc["targets"][0], "id": "my-laptop", "role": "build"}
    assert [t["id"] for t in doc["targets"][1:]] == ["board"]


@pytest.mark.parametrize("key", ["autoRestart", "autorestart"])
async def test_auto_restart_both_spellings_accepted(fleet: Api, key: str) -> None:
    doc = deploy_doc(run={"commands": ["./app"], key: True})
    r = await fleet.client.post("/tasks", content=yaml.safe_dump(doc),
                                headers={"Content-Type": "application/yaml"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["deploy"]["run"]["autoRestart"] is True


async def test_build_without_source_is_422_not_500(fleet: Api) -> None:
    doc = {"build": {"host": "my-laptop", "commands": ["make"], "artifacts": ["app"]}}
    r = await fleet.client.post("/tasks", json=doc)
    assert r.status_code == 422
    assert r.json()["path"] == "$.source"


async def test_build_host_unknown_is_422_at_build_host(fleet: Api) -> None:
    doc = {
        "source": {"zip": _zip_b64()},
        "build": {"host": "nobody", "commands": ["make"], "artifacts": ["app"]},
    }
    r = await fleet.client.post("/tasks", json=doc)
    assert r.status_code == 422 and r.json()["path"] == "$.build.host"


async def test_build_host_also_deploy_target_is_refused_with_hint(fleet: Api) -> None:
    doc = {
        "source": {"zip": _zip_b64()},
        "build": {"host": "dev-1", "commands": ["make"], "artifacts": ["app"]},
        "deploy": {"run": {"commands": ["./app"]}, "target": {"tags": ["swarm"]}},
    }
    r = await fleet.client.post("/tasks", json=doc)
    assert r.status_code == 422 and "source.task" in r.json()["error"]


async def test_no_matching_target_is_422_at_deploy_target(fleet: Api) -> None:
    r = await fleet.client.post("/tasks", json=deploy_doc(target={"tags": ["nowhere"]}))
    assert r.status_code == 422
    assert r.json()["path"] == "$.deploy.target"
    assert r.json()["code"] == "validation_error"


async def test_unknown_field_named_in_error(fleet: Api) -> None:
    doc = deploy_doc()
    doc["deploy"]["instal"] = {"commands": ["x"]}
    r = await fleet.client.post("/tasks", json=doc)
    assert r.status_code == 422
    assert r.json()["path"] == "$.deploy.instal"
    assert r.json()["code"] == "invalid_descriptor"


async def test_wrong_type_named_in_error(fleet: Api) -> None:
    r = await fleet.client.post("/tasks", json={**deploy_doc(), "debug": "yes"})
    assert r.status_code == 422 and r.json()["path"] == "$.debug"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"deploy": ', "application/json"),
        (b"deploy: [unclosed", "application/yaml"),
        (b"\xff\xfe", "application/json"),
        (b"", "application/json"),
    ],
)
async def test_malformed_body_is_400(fleet: Api, content: bytes, content_type: str) -> None:
    r = await fleet.client.post("/tasks", content=content, headers={"Content-Type": content_type})
    assert r.status_code == 400
    assert r.json()["code"] == "bad_request"


async def test_yaml_that_is_not_a_mapping_is_422(fleet: Api) -> None:
    r = await fleet.client.post(
        "/tasks", content=b"- just\n- a list\n", headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 422 and r.json()["path"] == "$"


async def test_unsupported_content_type_is_415(fleet: Api) -> None:
    r = await fleet.client.post("/tasks", content=b"x", headers={"Content-Type": "text/csv"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"


async def test_source_zip_stored_content_addressed_and_not_echoed(fleet: Api) -> None:
    archive = _zip_b64()
    r = await fleet.client.post("/tasks", json={**deploy_doc(), "source": {"zip": archive}})
    assert r.status_code == 201
    digest = hashlib.sha256(base64.b64decode(archive)).hexdigest()
    assert r.json()["source"]["sha256"] == digest
    assert r.json()["source"]["size"] == len(base64.b64decode(archive))
    assert archive not in r.text
    blob = fleet.settings.data_dir / "blobs" / digest[:2] / digest
    assert blob.read_bytes() == base64.b64decode(archive)


async def test_source_task_must_exist_and_have_something_to_deploy(fleet: Api) -> None:
    r = await fleet.client.post("/tasks", json={**deploy_doc(), "source": {"task": "ghost-task"}})
    assert r.status_code == 422 and r.json()["path"] == "$.source.task"
    assert "ghost-task is not a known task" in r.json()["error"]
    bare = (await fleet.client.post("/tasks", json=deploy_doc())).json()["id"]
    r = await fleet.client.post("/tasks", json={**deploy_doc(), "source": {"order": bare}})
    assert r.status_code == 422 and r.json()["path"] == "$.source.task"
    assert f"task {bare} has no artifacts" in r.json()["error"]
    first = (
        await fleet.client.post("/tasks", json={**deploy_doc(), "source": {"zip": _zip_b64()}})
    ).json()["id"]
    r = await fleet.client.post("/tasks", json={**deploy_doc(), "source": {"order": first}})
    assert r.status_code == 201 and r.json()["source"] == {
        "task": first,
        "sha256": None,
        "size": None,
    }


async def test_more_than_a_thousand_matches_all_get_rows(api: Api) -> None:
    ids = [f"node-{i:04d}" for i in range(1050)]
    await api.add_targets(ids, tags=("fleet",))
    r = await api.client.post("/tasks", json=deploy_doc(target={"tags": ["fleet"]}))
    assert r.status_code == 201, r.text
    assert r.json()["match"]["total"] == 1050
    got = await api.client.get(f"/tasks/{r.json()['id']}")
    assert [t["id"] for t in got.json()["targets"]] == ids


async def test_list_searches_sorts_and_pages(fleet: Api) -> None:
    for text in ("alpha rollout", "beta rollout", "gamma hotfix"):
        await fleet.client.post("/tasks", json={**deploy_doc(), "description": text})
    r = await fleet.client.get("/tasks", params={"description": "rollout", "sortOrder": "desc"})
    assert [t["description"] for t in r.json()["items"]] == ["beta rollout", "alpha rollout"]
    assert r.json()["total"] == 2 and r.json()["items"][0]["status"] == "pending"
    page = (await fleet.client.get("/tasks", params={"perPage": 1, "page": 2})).json()
    assert page["total"] == 3 and page["page"] == 2 and page["perPage"] == 1
    assert [t["description"] for t in page["items"]] == ["beta rollout"]
    assert "targets" not in page["items"][0]


@pytest.mark.parametrize(
    ("params", "path"),
    [({"perPage": 1001}, "query.perPage"), ({"page": 0}, "query.page"),
     ({"sortOrder": "up"}, "query.sortOrder"), ({"perPage": "x"}, "query.perPage")],
)  # fmt: skip
async def test_list_bad_paging_is_422_naming_parameter(
    api: Api, params: dict[str, Any], path: str
) -> None:
    r = await api.client.get("/tasks", params=params)
    assert r.status_code == 422 and r.json()["path"] == path


async def test_unknown_task_is_404_for_get_delete_stop(api: Api) -> None:
    for method, url in (("GET", "/tasks/none"), ("DELETE", "/tasks/none"),
                        ("PUT", "/tasks/none/stop"), ("GET", "/orders/none")):  # fmt: skip
        r = await api.client.request(method, url)
        assert r.status_code == 404, (method, url)
        assert r.json()["code"] == "not_found"


async def test_delete_refused_while_active_then_allowed(fleet: Api) -> None:
    task_id = (await fleet.client.post("/tasks", json=deploy_doc())).json()["id"]
    await fleet.storage.set_task_target_state(task_id, "dev-1", state="running", updated_at=5)
    r = await fleet.client.delete(f"/tasks/{task_id}")
    assert r.status_code == 409 and "dev-1" in r.json()["error"]
    await fleet.storage.set_task_target_state(task_id, "dev-1", state="stopped", updated_at=6)
    assert (await fleet.client.delete(f"/tasks/{task_id}")).status_code == 204
    assert (await fleet.client.get(f"/tasks/{task_id}")).status_code == 404


async def test_stop_pending_rows_at_once_and_asks_running_targets(fleet: Api) -> None:
    task_id = (await fleet.client.post("/tasks", json=deploy_doc())).json()["id"]
    await fleet.storage.set_task_target_state(task_id, "dev-2", state="running", updated_at=5)
    r = await fleet.client.put(f"/orders/{task_id}/stop")
    assert r.status_code == 202
    assert (r.json()["stopped"], r.json()["requested"], r.json()["refused"]) == (1, 1, [])
    doc = (await fleet.client.get(f"/tasks/{task_id}")).json()
    assert {t["id"]: t["state"] for t in doc["targets"]} == {"dev-1": "stopped", "dev-2": "running"}
    assert doc["stoppedAt"] is not None
    dispatcher = fleet.services.dispatcher
    assert isinstance(dispatcher, MemoryDispatcher)
    queued = dispatcher.pending("dev-2")
    assert len(queued) == 1 and queued[0] == StopRequest(task_id, id=queued[0].id)


async def test_orders_alias_lists_the_same_tasks(fleet: Api) -> None:
    task_id = (await fleet.client.post("/tasks", json=deploy_doc())).json()["id"]
    listed = (await fleet.client.get("/orders")).json()
    assert [t["id"] for t in listed["items"]] == [task_id]


async def test_create_needs_operator_and_list_needs_viewer(fleet: Api) -> None:
    viewer = await fleet.headers_for("viewer")
    operator = await fleet.headers_for("operator")
    r = await fleet.client.post("/tasks", json=deploy_doc(), headers=viewer)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (
        await fleet.client.post("/tasks", json=deploy_doc(), headers=operator)
    ).status_code == 201
    assert (await fleet.client.get("/tasks", headers=viewer)).status_code == 200
    anonymous = await fleet.client.get("/tasks", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


@pytest.fixture
async def small_limits(tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, max_body_bytes=2048, max_task_body_bytes=8192)
    async with running_api(settings) as running:
        yield running


async def test_oversized_task_body_is_413_by_content_length(small_limits: Api) -> None:
    doc = {**deploy_doc(), "description": "x" * 9000}
    r = await small_limits.client.post("/tasks", json=doc)
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


async def test_oversized_streamed_body_is_413_while_reading(small_limits: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"description": "'
        for _ in range(20):
            yield b"y" * 1000
        yield b'"}'

    r = await small_limits.client.post(
        "/tasks", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


async def test_other_endpoints_have_the_smaller_limit(small_limits: Api) -> None:
    body = json.dumps({"name": "n" * 3000}).encode()
    r = await small_limits.client.put("/targets/x", content=body,
                                      headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413


async def test_preview_names_the_matched_targets_and_creates_nothing(fleet: Api) -> None:
    r = await fleet.client.post(
        "/tasks/preview", json=deploy_doc(target={"tags": ["swarm"], "ids": ["board"]})
    )
    assert r.status_code == 200
    assert r.json() == {"total": 3, "targets": ["board", "dev-1", "dev-2"], "buildHost": None}
    assert (await fleet.client.get("/tasks")).json()["total"] == 0
    yaml_body = b"deploy:\n  run:\n    commands: [./a]\n  target:\n    tags: [dev]\n"
    r = await fleet.client.post(
        "/tasks/preview", content=yaml_body, headers={"Content-Type": "application/yaml"}
    )
    assert r.json()["targets"] == ["board"]


async def test_preview_errors_name_the_field_like_create(fleet: Api) -> None:
    r = await fleet.client.post("/tasks/preview", json=deploy_doc(run={"comands": ["x"]}))
    assert r.status_code == 422 and r.json()["path"].startswith("$.deploy.run")
    r = await fleet.client.post("/tasks/preview", json=deploy_doc(target={"tags": ["nobody"]}))
    assert r.status_code == 422 and r.json()["path"] == "$.deploy.target"
    viewer = await fleet.headers_for("viewer")
    r = await fleet.client.post("/tasks/preview", json=deploy_doc(), headers=viewer)
    assert r.status_code == 403


async def test_task_document_groups_failures_by_identical_reason(fleet: Api) -> None:
    task = (await fleet.client.post("/tasks", json=deploy_doc())).json()["id"]
    for target in ("dev-1", "dev-2"):
        await fleet.storage.set_task_target_state(
            task, target, state="install_failed", updated_at=5, reason="No space left on device"
        )
    doc = (await fleet.client.get(f"/tasks/{task}")).json()
    assert doc["failures"] == [
        {"state": "install_failed", "reason": "No space left on device", "count": 2,
         "targets": ["dev-1", "dev-2"]},
    ]  # fmt: skip
