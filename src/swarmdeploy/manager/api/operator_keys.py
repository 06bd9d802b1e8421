"""``/operator_keys``: operator signing keys (issue 5, ADR 0004; issue 9).

Issuing a key (generate or import) is an admin act: an admin issues it to itself or to an
API key (``owner``), certified with that key's role -- so an operator whose key was
revoked cannot issue itself a new one. (A caller that never had a key gets one generated
when it first signs: the admin who created its API key approved that one.) ``viewer`` may
read keys and export public parts; exporting a private key and revoking need ``admin``.
The private key of an export is encrypted with the passphrase the admin sends in the
``X-Export-Passphrase`` header (never in the URL, which ends up in logs).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query

from swarmdeploy.manager.api.deps import Admin, ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import (
    ListOf,
    OperatorKeyCreate,
    OperatorKeyExport,
    OperatorKeyPublic,
)
from swarmdeploy.manager.errors import Forbidden, InvalidInput
from swarmdeploy.manager.services.task_signing import key_owner
from swarmdeploy.storage.records import OperatorKeyRecord

router = APIRouter(prefix="/operator_keys", tags=["operator keys"])
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def operator_key_json(record: OperatorKeyRecord) -> dict[str, Any]:
    """The API document of a key (never its seed)."""
    return {
        "id": record.id,
        "name": record.name,
        "owner": record.owner,
        "role": record.role,
        "publicKey": base64.b64encode(record.public_key).decode(),
        "certificate": record.certificate.decode(),
        "serial": record.serial,
        "createdAt": record.created_at,
        "revokedAt": record.revoked_at,
    }


@router.post(
    "",
    status_code=201,
    response_model=OperatorKeyPublic,
    responses=responses(401, 403, 409),
)
async def create_operator_key(
    body: OperatorKeyCreate, services: ServicesDep, principal: Admin
) -> dict[str, Any]:
    """Issue a key (admin only) to ``owner`` (an API key id; default the caller): generate
    one, or import ``privateKey`` (armored, encrypted with ``passphrase``); the CA
    certifies it with the owner's role. A ``viewer`` API key cannot own one."""
    keys = services.operator_keys
    owner, holder, role = key_owner(principal), principal.name, principal.role
    if body.owner is not None and body.owner != owner:
        api_key = await services.storage.get_api_key(body.owner)
        if api_key is None:
            raise InvalidInput(f"no API key {body.owner!r}", path="$.owner")
        if api_key.role == "viewer":
            raise InvalidInput("a viewer never signs: it cannot own a signing key", path="$.owner")
        owner, holder, role = api_key.id, api_key.name, api_key.role
    name = body.name or holder
    if body.private_key is None:
        record = await keys.generate(owner=owner, name=name, role=role)
    else:
        record = await keys.import_key(
            body.private_key, body.passphrase, owner=owner, name=name, role=role
        )
    return operator_key_json(record)


@router.get("", response_model=ListOf[OperatorKeyPublic], responses=responses(401, 403))
async def list_operator_keys(services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """Every operator key, oldest first (revoked ones included)."""
    items = [operator_key_json(k) for k in await services.operator_keys.list()]
    return {"total": len(items), "items": items, "page": 1, "perPage": max(1, len(items))}


@router.get("/{key_id}", response_model=OperatorKeyPublic, responses=responses(401, 403, 404))
async def get_operator_key(key_id: KeyId, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """One key."""
    return operator_key_json(await services.operator_keys.get(key_id))


@router.get(
    "/{key_id}/export", response_model=OperatorKeyExport, responses=responses(401, 403, 404)
)
async def export_operator_key(
    key_id: KeyId,
    services: ServicesDep,
    principal: Viewer,
    private: Annotated[bool, Query()] = False,
    passphrase: Annotated[str, Header(alias="X-Export-Passphrase", max_length=1024)] = "",
) -> dict[str, Any]:
    """The public key and certificate; with ``private=true`` (``admin`` only) also the
    private key encrypted with the ``X-Export-Passphrase`` header."""
    record = await services.operator_keys.get(key_id)
    doc = operator_key_json(record)
    if private:
        if not principal.allows("admin"):
            raise Forbidden("exporting a private key needs the admin role")
        doc["privateKey"] = await services.operator_keys.export_private(key_id, passphrase)
    return doc


@router.delete("/{key_id}", response_model=OperatorKeyPublic, responses=responses(401, 403, 404))
async def revoke_operator_key(key_id: KeyId, services: ServicesDep, who: Admin) -> dict[str, Any]:
    """Revoke the key: agents refuse tasks signed with it from their next revocation list."""
    revoked = await services.operator_keys.revoke(key_id)
    await services.audit.append(who, "operator_key.revoke", key_id)
    return operator_key_json(revoked)
