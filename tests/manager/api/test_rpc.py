"""``/rpc/targets`` registration and ``/rpc/server_info``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from swarmdeploy.crypto import curve
from swarmdeploy.crypto.ca import verify_device_certificate
from tests.manager.api.test_targets import RecordingListener
from tests.manager.conftest import Api, device_body, make_settings, running_api


async def test_register_returns_keys_ports_and_a_verifiable_certificate(api: Api) -> None:
    listener = RecordingListener()
    api.services.registry.add_listener(listener)
    r = await api.register("robot-1", tags=["swarm"])
    assert r.status_code == 201, r.text
    doc = r.json()
    ca_pem = (api.settings.data_dir / "ca.pem").read_bytes()
    assert doc["caCertificate"].encode() == ca_pem
    now = dt.datetime.now(dt.UTC)
    assert verify_device_certificate(doc["certificate"].encode(), ca_pem, now=now) == "robot-1"
    keyfile = (api.settings.data_dir / "curve.key").read_text()
    assert doc["zeromq"]["publicKey"] == curve.decode_keyfile(keyfile).public
    assert (doc["zeromq"]["pubPort"], doc["zeromq"]["subPort"]) == (5556, 5557)
    assert listener.registered == ["robot-1"]
    target = (await api.client.get("/targets/robot-1")).json()
    assert target["tags"] == ["swarm"]


async def test_register_without_token_is_401(api: Api) -> None:
    r = await api.client.post("/rpc/targets", json=device_body("x"))
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


@pytest.mark.parametrize("token", ["", "not-a-token", "0000-0000-0000"])
async def test_register_with_bad_token_is_401(api: Api, token: str) -> None:
    await api.tokens(1)
    r = await api.client.post(
        "/rpc/targets", json=device_body("x"), headers={"X-Auth-Token": token}
    )
    assert r.status_code == 401


async def test_token_is_single_use(api: Api) -> None:
    [token] = await api.tokens(1)
    assert (await api.register("first", token=token)).status_code == 201
    r = await api.register("second", token=token)
    assert r.status_code == 401 and "spent" in r.json()["error"]


async def test_token_typed_in_upper_case_works(api: Api) -> None:
    [token] = await api.tokens(1)
    assert (await api.register("upper", token=token.upper())).status_code == 201


async def test_token_single_use_under_concurrent_race(api: Api) -> None:
    for round_no in range(5):
        [token] = await api.tokens(1, name=f"race-{round_no}")
        results = await asyncio.gather(
            *(api.register(f"racer-{round_no}-{i}", token=token) for i in range(4))
        )
        statuses = sorted(r.status_code for r in results)
        assert statuses == [201, 401, 401, 401], statuses
    listed = (await api.client.get("/targets")).json()
    assert listed["total"] == 5


async def test_existing_id_is_409_and_token_stays_usable(api: Api) -> None:
    assert (await api.register("dup")).status_code == 201
    [token] = await api.tokens(1, name="again")
    r = await api.register("dup", token=token)
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    assert (await api.register("other", token=token)).status_code == 201


async def test_set_available_counts_down(api: Api) -> None:
    tokens = await api.tokens(3, name="batch")
    await api.register("one", token=tokens[0])
    doc = (await api.client.get("/token_sets/batch")).json()
    assert (doc["total"], doc["available"]) == (3, 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("publicKey", "short"),
        ("publicKey", "0" * 40),
        ("identityKey", "not base64!"),
        ("identityKey", "AAAA"),
        ("id", "has space"),
    ],
)
async def test_register_invalid_keys_or_id_are_422(api: Api, field: str, value: str) -> None:
    [token] = await api.tokens(1)
    body = {**device_body("dev"), field: value}
    r = await api.client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
    assert r.status_code == 422 and r.json()["path"] == f"$.{field}"
    assert (await api.client.get("/token_sets/set")).json()["available"] == 1


async def test_register_unknown_field_is_422(api: Api) -> None:
    [token] = await api.tokens(1)
    body = {**device_body("dev"), "publicKeySwarmio": "x"}
    r = await api.client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
    assert r.status_code == 422 and r.json()["path"] == "$.publicKeySwarmio"


async def test_expired_token_is_401(tmp_path: Path) -> None:
    now = [1_700_000_000_000]
    async with running_api(make_settings(tmp_path), clock=lambda: now[0]) as api:
        _, [token] = await api.services.tokens.create("short", 1, expires_in_s=60)
        now[0] += 61_000
        r = await api.register("late", token=token)
        assert r.status_code == 401
        assert await api.services.tokens.purge_expired() == 1


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(
        tmp_path, registration_rate_per_min=6, registration_burst=3,
        registration_global_rate_per_min=600,
    )  # fmt: skip
    async with running_api(settings) as running:
        yield running


async def test_registration_attempts_rate_limited_per_address(strict: Api) -> None:
    body = device_body("guess")
    for _ in range(3):
        r = await strict.client.post(
            "/rpc/targets", json=body, headers={"X-Auth-Token": "0000-0000-0000"}
        )
        assert r.status_code == 401
    r = await strict.client.post(
        "/rpc/targets", json=body, headers={"X-Auth-Token": "0000-0000-0000"}
    )
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 10
    # even a valid token is refused while limited ...
    [token] = await strict.tokens(1)
    assert (await strict.register("real", token=token)).status_code == 429
    # ... but another address is not affected
    other = httpx.ASGITransport(app=strict.app, client=("10.9.8.7", 4000))
    async with httpx.AsyncClient(transport=other, base_url="http://manager") as client:
        r = await client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
        assert r.status_code == 201
    metrics = (await strict.client.get("/metrics")).text
    assert 'swarmdeploy_registrations_total{result="rate_limited"} 2.0' in metrics


async def test_server_info_is_public(api: Api) -> None:
    r = await api.client.get("/rpc/server_info", headers={"Authorization": ""})
    assert r.status_code == 200
    doc = r.json()
    assert doc["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(doc["zeromq"]["publicKey"]) == 40 and doc["version"]


async def test_whoami_names_the_caller_and_its_role(api: Api) -> None:
    refused = await api.client.get("/rpc/whoami", headers={"Authorization": ""})
    assert refused.status_code == 401
    admin = (await api.client.get("/rpc/whoami")).json()
    assert admin == {
        "name": "admin",
        "role": "admin",
        "via": "admin-key",
        "auditName": "bootstrap admin key",
    }
    viewer = await api.client.get("/rpc/whoami", headers=await api.headers_for("viewer", "eve"))
    assert viewer.json()["role"] == "viewer" and viewer.json()["name"] == "eve"
    assert viewer.json()["via"] == "api-key" and viewer.json()["auditName"].startswith("key eve (")
