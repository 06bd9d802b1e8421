"""Manager-side key protection (issue 5): only an admin gets an operator's private key out,
and only encrypted with the passphrase the admin chose.

The deleted-target-cannot-reconnect case is covered by
``tests/e2e/test_operations.py`` (real manager and agent processes).
"""

from __future__ import annotations

from swarmdeploy.crypto import keyenc
from tests.manager.conftest import Api


async def test_operator_cannot_export_private_keys_even_its_own(api: Api) -> None:
    operator = await api.headers_for("operator", name="mallory")
    [mallory] = [k for k in await api.services.api_keys.list() if k.name == "mallory"]
    key = (await api.client.post("/operator_keys", json={"owner": mallory.id})).json()
    url = f"/operator_keys/{key['id']}/export?private=true"
    headers = {**operator, "X-Export-Passphrase": "pw"}
    r = await api.client.get(url, headers=headers)
    assert r.status_code == 403
    assert "BEGIN" not in r.text


async def test_viewer_cannot_export_private_keys(api: Api) -> None:
    key = (await api.client.post("/operator_keys", json={"name": "ops"})).json()
    viewer = {**await api.headers_for("viewer"), "X-Export-Passphrase": "pw"}
    r = await api.client.get(f"/operator_keys/{key['id']}/export?private=true", headers=viewer)
    assert r.status_code == 403


async def test_admin_export_is_encrypted_with_the_given_passphrase(api: Api) -> None:
    key = (await api.client.post("/operator_keys", json={"name": "ops"})).json()
    url = f"/operator_keys/{key['id']}/export?private=true"
    assert (await api.client.get(url)).status_code == 422  # no passphrase, no export
    r = await api.client.get(url, headers={"X-Export-Passphrase": "a long passphrase"})
    assert r.status_code == 200
    armored = r.json()["privateKey"]
    assert keyenc.describe(armored).kdf == "argon2id"
    record = await api.storage.get_operator_key(key["id"])
    assert record is not None
    seed = keyenc.decrypt_seed(armored, passphrase="a long passphrase")
    assert seed == api.services.operator_keys.seed_of(record)
