"""``/api_keys`` and role-based access across endpoints."""

from __future__ import annotations

import pytest

from tests.manager.conftest import Api, bearer


async def test_created_key_works_with_its_role(api: Api) -> None:
    r = await api.client.post("/api_keys", json={"name": "ci bot", "role": "viewer"})
    assert r.status_code == 201
    doc = r.json()
    assert doc["key"].startswith("sdk_") and doc["role"] == "viewer"
    headers = bearer(doc["key"])
    assert (await api.client.get("/targets", headers=headers)).status_code == 200
    assert (await api.client.post("/token_sets?name=a&total=1", headers=headers)).status_code == 403


async def test_list_never_shows_secrets_and_records_use(api: Api) -> None:
    key = (await api.client.post("/api_keys", json={"name": "k1", "role": "operator"})).json()
    await api.client.get("/tasks", headers=bearer(key["key"]))
    listed = (await api.client.get("/api_keys")).json()
    assert listed["total"] == 1
    item = listed["items"][0]
    assert set(item) == {"id", "name", "role", "createdAt", "lastUsedAt"}
    assert item["lastUsedAt"] is not None
    assert key["key"] not in str(listed)


async def test_deleted_key_is_refused_at_once(api: Api) -> None:
    key = (await api.client.post("/api_keys", json={"name": "tmp", "role": "admin"})).json()
    assert (await api.client.delete(f"/api_keys/{key['id']}")).status_code == 204
    r = await api.client.get("/targets", headers=bearer(key["key"]))
    assert r.status_code == 401
    assert (await api.client.delete(f"/api_keys/{key['id']}")).status_code == 404


async def test_duplicate_name_is_409(api: Api) -> None:
    await api.client.post("/api_keys", json={"name": "same", "role": "viewer"})
    r = await api.client.post("/api_keys", json={"name": "same", "role": "admin"})
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("body", "path"),
    [({"name": "x", "role": "root"}, "$.role"), ({"role": "viewer"}, "$.name"),
     ({"name": "", "role": "viewer"}, "$.name")],
)  # fmt: skip
async def test_invalid_key_request_is_422(api: Api, body: dict[str, str], path: str) -> None:
    r = await api.client.post("/api_keys", json=body)
    assert r.status_code == 422 and r.json()["path"] == path


async def test_keys_need_admin(api: Api) -> None:
    operator = await api.headers_for("operator")
    assert (await api.client.get("/api_keys", headers=operator)).status_code == 403
    r = await api.client.post("/api_keys", json={"name": "x", "role": "admin"}, headers=operator)
    assert r.status_code == 403


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer wrong",
        "Basic dXNlcjpwYXNz",
        "Bearer sdk_0123456789ab_" + "A" * 43,
        "Bearer sdk_garbage",
        "Bearer a.b.c",
    ],
)
async def test_bad_credentials_are_401(api: Api, authorization: str) -> None:
    r = await api.client.get("/targets", headers={"Authorization": authorization})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


async def test_role_matrix(api: Api) -> None:
    assert (await api.register("t1")).status_code == 201
    viewer, operator = await api.headers_for("viewer"), await api.headers_for("operator")
    cases = [
        ("GET", "/targets/t1", None, {"viewer": 200, "operator": 200}),
        ("PUT", "/targets/t1", {"name": "n"}, {"viewer": 403, "operator": 200}),
        ("PUT", "/targets/t1/stop", None, {"viewer": 403, "operator": 202}),
        ("GET", "/token_sets", None, {"viewer": 403, "operator": 403}),
        ("DELETE", "/targets/t1", None, {"viewer": 403, "operator": 403}),
    ]
    for method, url, body, expected in cases:
        for role, headers in (("viewer", viewer), ("operator", operator)):
            r = await api.client.request(method, url, json=body, headers=headers)
            assert r.status_code == expected[role], (method, url, role, r.text)
    assert (await api.client.delete("/targets/t1")).status_code == 204
