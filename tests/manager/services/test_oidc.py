"""OpenID Connect bearer tokens, verified against a JWKS served on 127.0.0.1 by the test."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swarmdeploy.manager.services.oidc import role_from_claims
from swarmdeploy.manager.settings import Role
from tests.manager.conftest import Api, bearer, make_settings, running_api

ISSUER = "https://idp.example.test/realms/fleet"
AUDIENCE = "swarmdeploy"


class Idp:
    """A signing key and the JWKS endpoint that publishes it."""

    def __init__(self, url: str, key: ec.EllipticCurvePrivateKey) -> None:
        self.url = url
        self.key = key

    def token(self, key: ec.EllipticCurvePrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "preferred_username": "carol",
                "iat": now, "exp": now + 300, **claims}  # fmt: skip
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm="ES256", headers={"kid": "k1"})


@pytest.fixture
def idp() -> Iterator[Idp]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    payload = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Idp(f"http://127.0.0.1:{server.server_address[1]}/certs", key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _oidc_settings(tmp_path: Path, jwks_url: str) -> dict[str, Any]:
    return {
        "oidc_issuer": ISSUER,
        "oidc_jwks_url": jwks_url,
        "oidc_audience": AUDIENCE,
        "oidc_role_claim": "realm_access.roles",
        "oidc_role_map": {"fleet-operators": "operator", "fleet-admins": "admin"},
    }


@pytest.fixture
async def oidc_api(tmp_path: Path, idp: Idp) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, **_oidc_settings(tmp_path, idp.url))
    async with running_api(settings) as api:
        yield api


async def test_mapped_role_grants_operator_but_not_admin(oidc_api: Api, idp: Idp) -> None:
    assert (await oidc_api.register("bot")).status_code == 201
    token = idp.token(realm_access={"roles": ["offline_access", "fleet-operators"]})
    headers = bearer(token)
    r = await oidc_api.client.put("/targets/bot/command", json={"command": "id"}, headers=headers)
    assert r.status_code == 202
    assert (await oidc_api.client.get("/token_sets", headers=headers)).status_code == 403
    audit = (await oidc_api.client.get("/logs", params={"command": "$manager"})).json()
    assert "oidc carol" in audit["items"][0]["output"]


async def test_highest_mapped_role_wins(oidc_api: Api, idp: Idp) -> None:
    token = idp.token(realm_access={"roles": ["fleet-operators", "fleet-admins"]})
    assert (await oidc_api.client.get("/token_sets", headers=bearer(token))).status_code == 200


async def test_valid_token_without_role_is_403(oidc_api: Api, idp: Idp) -> None:
    token = idp.token(realm_access={"roles": ["somebody-else"]})
    r = await oidc_api.client.get("/targets", headers=bearer(token))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 3600},
        {"aud": "another-service"},
        {"iss": "https://evil.example.test"},
        {"aud": None},
    ],
)
async def test_invalid_claims_are_401(oidc_api: Api, idp: Idp, claims: dict[str, Any]) -> None:
    token = idp.token(realm_access={"roles": ["fleet-admins"]}, **claims)
    r = await oidc_api.client.get("/targets", headers=bearer(token))
    assert r.status_code == 401


async def test_token_signed_by_another_key_is_401(oidc_api: Api, idp: Idp) -> None:
    forged = idp.token(key=ec.generate_private_key(ec.SECP256R1()),
                       realm_access={"roles": ["fleet-admins"]})  # fmt: skip
    assert (await oidc_api.client.get("/targets", headers=bearer(forged))).status_code == 401


async def test_unsigned_token_is_401(oidc_api: Api) -> None:
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "roles": ["admin"]},
        key="",
        algorithm="none",
        headers={"kid": "k1"},
    )
    assert (await oidc_api.client.get("/targets", headers=bearer(unsigned))).status_code == 401


async def test_unreachable_jwks_is_503(tmp_path: Path, idp: Idp) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/certs"
    async with running_api(make_settings(tmp_path, **_oidc_settings(tmp_path, dead))) as api:
        token = idp.token(realm_access={"roles": ["fleet-admins"]})
        r = await api.client.get("/targets", headers=bearer(token))
        assert r.status_code == 503 and r.json()["code"] == "unavailable"


async def test_api_keys_still_work_with_oidc(oidc_api: Api) -> None:
    assert (await oidc_api.client.get("/targets")).status_code == 200


def test_role_from_claims_string_list_and_direct_names() -> None:
    mapping: dict[str, Role] = {"ops": "operator"}
    assert role_from_claims({"roles": "ops"}, "roles", mapping) == "operator"
    assert role_from_claims({"roles": ["viewer", "ops"]}, "roles", mapping) == "operator"
    assert role_from_claims({"roles": ["admin"]}, "roles", {}) == "admin"
    assert role_from_claims({"roles": [1, None]}, "roles", mapping) is None
    assert role_from_claims({"a": {"b": ["ops"]}}, "a.b", mapping) == "operator"
    assert role_from_claims({"a": "flat"}, "a.b", mapping) is None
