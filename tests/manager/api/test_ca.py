"""``/ca``: the CA certificate for every role, the encrypted key export for admins only."""

from __future__ import annotations

import base64
import hashlib
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swarmdeploy.crypto.anchors import parse_anchor_file
from swarmdeploy.manager.settings import Role
from tests.manager.conftest import Api


async def test_every_role_reads_the_certificate_and_fingerprints(api: Api) -> None:
    ca = api.services.keys.ca
    for role in ("viewer", "operator", "admin"):
        r = await api.client.get("/ca", headers=await api.headers_for(role))
        assert r.status_code == 200, role
        doc = r.json()
        assert doc["certificate"] == (api.settings.data_dir / "ca.pem").read_text()
        der = x509.load_pem_x509_certificate(doc["certificate"].encode()).public_bytes(
            serialization.Encoding.DER
        )
        assert doc["fingerprint"] == "sha256:" + hashlib.sha256(der).hexdigest()
        assert doc["keyFingerprint"] == "sha256:" + hashlib.sha256(ca.public_key_raw).hexdigest()
        assert base64.b64decode(doc["publicKey"]) == ca.public_key_raw
        assert doc["notBefore"] < doc["notAfter"] and "swarmdeploy CA" in doc["subject"]
        assert "privateKey" not in doc
    pins = parse_anchor_file(f"{doc['fingerprint']}\n{doc['keyFingerprint']}\n")
    assert len(pins.pins) == 2


async def test_unauthenticated_gets_401_with_the_error_envelope(api: Api) -> None:
    r = await api.client.get("/ca", headers={"Authorization": ""})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = await api.client.post(
        "/ca/export", json={"passphrase": "x" * 12}, headers={"Authorization": ""}
    )
    assert r.status_code == 401 and set(r.json()) == {"error", "code"}


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_non_admin_export_is_forbidden_and_logged(
    api: Api, role: Role, caplog: pytest.LogCaptureFixture
) -> None:
    headers = await api.headers_for(role, name=f"{role}-bob")
    with caplog.at_level(logging.WARNING, logger="swarmdeploy.manager.api.ca"):
        r = await api.client.post("/ca/export", json={"passphrase": "x" * 12}, headers=headers)
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden" and "admin" in r.json()["error"]
    assert "privateKey" not in r.text and "PRIVATE KEY" not in r.text
    assert any(f"{role}-bob" in m and "refused" in m for m in caplog.messages)


async def test_admin_export_decrypts_to_the_ca_key_and_is_audited(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    headers = await api.headers_for("admin", name="root-alice")
    with caplog.at_level(logging.WARNING, logger="swarmdeploy.manager.api.ca"):
        r = await api.client.post(
            "/ca/export", json={"passphrase": "offline vault 7"}, headers=headers
        )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert doc["privateKey"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(doc["privateKey"].encode(), b"offline vault 7")
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == api.services.keys.ca.public_key_raw
    assert doc["certificate"] == api.services.keys.ca.cert_pem().decode()
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(doc["privateKey"].encode(), b"offline vault 8")
    assert any("root-alice" in m and "exported" in m for m in caplog.messages)
    assert not any("offline vault" in m for m in caplog.messages)


@pytest.mark.parametrize(
    ("body", "path"),
    [({"passphrase": "short"}, "$.passphrase"), ({}, "$.passphrase"),
     ({"passphrase": "long enough", "extra": 1}, "$.extra")],
)  # fmt: skip
async def test_bad_export_body_is_422_naming_the_field(
    api: Api, body: dict[str, object], path: str
) -> None:
    r = await api.client.post("/ca/export", json=body)
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error" and r.json()["path"] == path


async def test_export_passphrase_is_not_accepted_in_the_query(api: Api) -> None:
    r = await api.client.post("/ca/export?passphrase=long-enough-pass")
    assert r.status_code == 422 and r.json()["path"] == "$"
