"""``/apps``, standing tasks and ``GET /targets?select=`` on an in-process manager (the agent
side is in ``tests/e2e/test_apps.py``)."""

from __future__ import annotations

from typing import Any

from swarmdeploy.manager.dispatch import MemoryDispatcher, StopRequest
from tests.manager.conftest import Api


def _release(app: str, target: dict[str, Any], version: str = "1") -> dict[str, Any]:
    return {
        "app": app,
        "version": version,
        "deploy": {"run": {"commands": ["sleep 1"]}, "target": target},
    }


async def _post(api: Api, doc: dict[str, Any]) -> str:
    response = await api.client.post("/tasks", json=doc)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _rows(api: Api, task_id: str) -> dict[str, str]:
    doc = (await api.client.get(f"/tasks/{task_id}")).json()
    return {t["id"]: t["state"] for t in doc["targets"]}


async def test_standing_task_without_devices_waits_then_reaches_registered_ones(api: Api) -> None:
    task = await _post(api, _release("detector", {"tags": ["camera"], "follow": True}))
    assert await _rows(api, task) == {}
    doc = (await api.client.get(f"/tasks/{task}")).json()
    assert doc["app"] == "detector" and doc["version"] == "1"
    assert (await api.register("cam-1", tags=["camera"])).status_code == 201
    assert (await api.register("gw-1", tags=["gateway"])).status_code == 201
    assert await _rows(api, task) == {"cam-1": "pending"}
    # a tag edit that makes a device match adds it
    response = await api.client.put("/targets/gw-1", json={"tags": ["gateway", "camera"]})
    assert response.status_code == 200
    assert await _rows(api, task) == {"cam-1": "pending", "gw-1": "pending"}


async def test_one_shot_task_without_match_is_still_a_422(api: Api) -> None:
    response = await api.client.post("/tasks", json=_release("x", {"tags": ["nobody"]}))
    assert response.status_code == 422
    assert response.json()["path"] == "$.deploy.target"
    assert "follow" in response.json()["error"]


async def test_late_device_gets_only_the_newest_standing_release_of_an_app(api: Api) -> None:
    old = await _post(api, _release("detector", {"tags": ["camera"], "follow": True}, "1"))
    new = await _post(api, _release("detector", {"tags": ["camera"], "follow": True}, "2"))
    other = await _post(api, _release("uploader", {"tags": ["camera"], "follow": True}))
    assert (await api.register("cam-1", tags=["camera"])).status_code == 201
    assert await _rows(api, old) == {}
    assert await _rows(api, new) == {"cam-1": "pending"}
    assert await _rows(api, other) == {"cam-1": "pending"}
    apps = (await api.client.get("/targets/cam-1/apps")).json()["items"]
    assert [(a["app"], a["desired"]["taskId"], a["running"], a["behind"]) for a in apps] == [
        ("detector", new, None, True),
        ("uploader", other, None, True),
    ]
    assert apps[0]["state"] == "pending"


async def test_remove_stops_pending_rows_of_devices_that_leave(api: Api) -> None:
    target = {"select": "camera,!lab", "follow": True, "remove": True}
    task = await _post(api, _release("probe", target))
    assert (await api.register("cam-1", tags=["camera"])).status_code == 201
    assert await _rows(api, task) == {"cam-1": "pending"}
    await api.client.put("/targets/cam-1", json={"tags": ["camera", "lab"]})
    assert await _rows(api, task) == {"cam-1": "stopped"}


async def test_apps_views_list_releases_and_devices(api: Api) -> None:
    await api.add_targets(["a1", "a2"], tags=("camera",))
    first = await _post(api, _release("detector", {"tags": ["camera"]}, "1.0"))
    second = await _post(api, _release("detector", {"ids": ["a1"]}, "2.0"))
    await api.storage.set_task_target_state(first, "a2", state="running", updated_at=5)
    listed = (await api.client.get("/apps")).json()
    assert listed["total"] == 1
    (item,) = listed["items"]
    assert (item["name"], item["releases"], item["devices"], item["running"], item["behind"]) == (
        "detector", 2, 2, 1, 1,
    )  # fmt: skip
    assert item["latest"]["taskId"] == second
    doc = (await api.client.get("/apps/detector")).json()
    assert [r["version"] for r in doc["releases"]] == ["2.0", "1.0"]
    devices = {d["targetId"]: d for d in doc["devices"]}
    assert devices["a1"]["desired"]["taskId"] == second and devices["a1"]["behind"]
    assert devices["a2"]["running"]["taskId"] == first and not devices["a2"]["behind"]
    assert (await api.client.get("/apps/nothing")).status_code == 404
    assert (await api.client.get("/apps/-bad")).status_code == 422
    assert (await api.client.get("/targets/nobody/apps")).status_code == 404


async def test_stop_one_app_on_one_device(api: Api) -> None:
    await api.add_targets(["s1"])
    task = await _post(api, _release("detector", {"ids": ["s1"]}))
    other = await _post(api, _release("uploader", {"ids": ["s1"]}))
    await api.storage.set_task_target_state(task, "s1", state="running", updated_at=5)
    await api.storage.set_task_target_state(other, "s1", state="running", updated_at=5)
    response = await api.client.put("/targets/s1/apps/detector/stop")
    assert response.status_code == 202
    dispatcher = api.services.dispatcher
    assert isinstance(dispatcher, MemoryDispatcher)
    stops = [r for r in dispatcher.pending("s1") if isinstance(r, StopRequest)]
    assert [s.task_id for s in stops] == [task]
    assert (await api.client.put("/targets/s1/apps/nothing/stop")).status_code == 404


async def test_targets_list_filters_by_selector(api: Api) -> None:
    await api.add_targets(["c1"], tags=("camera", "outdoor"))
    await api.add_targets(["c2"], tags=("camera", "lab"))
    await api.add_targets(["g1"], tags=("gateway",))
    response = await api.client.get("/targets", params={"select": "camera,+outdoor,!lab"})
    assert [t["id"] for t in response.json()["items"]] == ["c1"]
    response = await api.client.get("/targets", params={"select": "!lab"})
    assert [t["id"] for t in response.json()["items"]] == ["c1", "g1"]
    response = await api.client.get("/targets", params={"select": "camera,+"})
    assert response.status_code == 422 and response.json()["path"] == "select"


async def test_task_with_all_of_selector_matches_in_full(api: Api) -> None:
    await api.add_targets(["c1"], tags=("camera", "outdoor"))
    await api.add_targets(["c2"], tags=("camera",))
    doc = {"deploy": {"run": {"commands": ["true"]}, "target": {"all": ["camera", "outdoor"]}}}
    task = await _post(api, doc)
    assert await _rows(api, task) == {"c1": "pending"}
    match = (await api.client.get(f"/tasks/{task}")).json()["match"]
    assert match["tags"] == ["camera", "outdoor"] and match["total"] == 1
