"""``/token_sets``: tokens shown once, stored hashed, 404s, admin only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.manager.conftest import Api


async def test_create_with_query_parameters_as_original(api: Api) -> None:
    r = await api.client.post("/token_sets", params={"name": "pilot1", "total": 3})
    assert r.status_code == 201
    doc = r.json()
    assert (doc["name"], doc["total"], doc["available"]) == ("pilot1", 3, 3)
    assert len(set(doc["tokens"])) == 3
    assert all(re.fullmatch(r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}", t) for t in doc["tokens"])
    week_ms = 7 * 24 * 3600 * 1000
    assert doc["expiresAt"] - doc["createdAt"] == week_ms


async def test_create_with_json_body_and_expiry(api: Api) -> None:
    r = await api.client.post("/token_sets", json={"name": "b", "total": 1, "expiresIn": 3600})
    assert r.status_code == 201
    assert r.json()["expiresAt"] - r.json()["createdAt"] == 3_600_000


@pytest.mark.parametrize(
    ("params", "body", "path"),
    [
        ({}, None, "query.name"),
        ({"name": "n"}, None, "query.total"),
        ({"name": "n", "total": 0}, None, "query.total"),
        ({"name": "bad name", "total": 1}, None, "query.name"),
        ({"name": "n", "total": 1}, {"name": "n", "total": 1}, "$"),
        ({}, {"name": "n", "total": 1, "extra": 1}, "$.extra"),
        ({}, {"name": "n", "total": "many"}, "$.total"),
    ],
)
async def test_create_invalid_is_422(
    api: Api, params: dict[str, str | int], body: dict[str, object] | None, path: str
) -> None:
    r = await api.client.post("/token_sets", params=params, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["path"] == path


async def test_duplicate_name_is_409(api: Api) -> None:
    assert (await api.client.post("/token_sets?name=dup&total=1")).status_code == 201
    r = await api.client.post("/token_sets?name=dup&total=1")
    assert r.status_code == 409


async def test_get_and_delete_unknown_are_404(api: Api) -> None:
    assert (await api.client.get("/token_sets/nope")).status_code == 404
    assert (await api.client.delete("/token_sets/nope")).status_code == 404


async def test_list_get_delete_round_trip(api: Api) -> None:
    await api.client.post("/token_sets?name=one&total=2")
    await api.client.post("/token_sets?name=two&total=1")
    listed = (await api.client.get("/token_sets")).json()
    assert listed["total"] == 2 and {s["name"] for s in listed["items"]} == {"one", "two"}
    assert "tokens" not in listed["items"][0]
    assert (await api.client.get("/token_sets/one")).json()["available"] == 2
    assert (await api.client.delete("/token_sets/one")).status_code == 204
    assert (await api.client.get("/token_sets/one")).status_code == 404


async def test_deleted_set_tokens_stop_working(api: Api) -> None:
    token = (await api.client.post("/token_sets?name=gone&total=1")).json()["tokens"][0]
    await api.client.delete("/token_sets/gone")
    assert (await api.register("late", token=token)).status_code == 401


def _database_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.glob("manager.db*"))


async def test_tokens_are_not_stored_in_plaintext(api: Api, tmp_path: Path) -> None:
    tokens = (await api.client.post("/token_sets?name=secret&total=5")).json()["tokens"]
    stored = _database_bytes(tmp_path)
    assert stored, "the SQLite database files exist"
    for token in tokens:
        assert token.encode() not in stored
        assert token.replace("-", "").encode() not in stored


async def test_token_sets_need_admin(api: Api) -> None:
    operator = await api.headers_for("operator")
    assert (
        await api.client.post("/token_sets?name=x&total=1", headers=operator)
    ).status_code == 403
    assert (await api.client.get("/token_sets", headers=operator)).status_code == 403
