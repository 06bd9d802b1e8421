"""``/operator_keys``: generate, import, read, export, revoke, and who may do what."""

from __future__ import annotations

from swarmdeploy.crypto import keyenc
from swarmdeploy.crypto.anchors import parse_anchor_file
from swarmdeploy.crypto.operator import key_id, verify_revocation_list
from tests.manager.conftest import Api

FAST = keyenc.KdfParams(ops=1, mem_bytes=8192)


async def test_admin_issues_a_key_owned_by_an_operators_api_key(api: Api) -> None:
    headers = await api.headers_for("operator", name="alice")
    alice = next(k for k in await api.services.api_keys.list() if k.name == "alice")
    r = await api.client.post("/operator_keys", json={"owner": alice.id})
    assert r.status_code == 201
    doc = r.json()
    assert doc["name"] == "alice" and doc["role"] == "operator" and doc["revokedAt"] is None
    assert doc["owner"] == alice.id
    assert (await api.client.get(f"/operator_keys/{doc['id']}")).json() == doc
    listed = (await api.client.get("/operator_keys", headers=headers)).json()
    assert [k["id"] for k in listed["items"]] == [doc["id"]]
    assert "sealed" not in str(listed).lower()


async def test_imported_key_keeps_its_id(api: Api) -> None:
    seed = bytes(range(32))
    armored = keyenc.encrypt_with_passphrase(seed, "pw", kdf=FAST)
    body = {"name": "ci", "privateKey": armored, "passphrase": "pw"}
    r = await api.client.post("/operator_keys", json=body)
    assert r.status_code == 201
    assert r.json()["id"] == key_id(keyenc.describe(armored).public_key)
    again = await api.client.post("/operator_keys", json=body)
    assert again.status_code == 409
    wrong = await api.client.post("/operator_keys", json={**body, "passphrase": "no"})
    assert wrong.status_code == 422


async def test_keys_are_not_issued_to_unknown_or_viewer_api_keys(api: Api) -> None:
    await api.headers_for("viewer", name="vera")
    vera = next(k for k in await api.services.api_keys.list() if k.name == "vera")
    r = await api.client.post("/operator_keys", json={"owner": vera.id})
    assert r.status_code == 422 and r.json()["path"] == "$.owner"
    r = await api.client.post("/operator_keys", json={"owner": "nosuchkey"})
    assert r.status_code == 422 and "nosuchkey" in r.json()["error"]


async def test_viewer_cannot_create_or_revoke_but_exports_public(api: Api) -> None:
    key = (await api.client.post("/operator_keys", json={"name": "ops"})).json()
    viewer = await api.headers_for("viewer")
    assert (await api.client.post("/operator_keys", json={}, headers=viewer)).status_code == 403
    r = await api.client.get(f"/operator_keys/{key['id']}/export", headers=viewer)
    assert r.status_code == 200 and r.json()["privateKey"] is None
    assert r.json()["certificate"] == key["certificate"]
    assert (
        await api.client.delete(f"/operator_keys/{key['id']}", headers=viewer)
    ).status_code == 403


async def test_admin_revokes_and_the_revocation_list_names_the_key(api: Api) -> None:
    key = (await api.client.post("/operator_keys", json={"name": "ops"})).json()
    r = await api.client.delete(f"/operator_keys/{key['id']}")
    assert r.status_code == 200 and r.json()["revokedAt"] is not None
    anchors = parse_anchor_file(api.services.keys.ca.cert_pem().decode())
    crl = await api.services.operator_keys.revocation_list()
    assert key["id"] in verify_revocation_list(crl, anchors, last_number=0).key_ids
    assert (await api.client.delete("/operator_keys/" + "0" * 32)).status_code == 404
