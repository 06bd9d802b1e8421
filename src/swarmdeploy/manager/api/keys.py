"""``/api_keys`` (admin): operator API keys; the secret is shown once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from swarmdeploy.manager.api.deps import Admin, PageQuery, PerPageQuery, ServicesDep
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ListOf
from swarmdeploy.storage.records import ApiKeyRecord

router = APIRouter(prefix="/api_keys", tags=["api keys"])


def api_key_json(record: ApiKeyRecord) -> dict[str, Any]:
    """The API document of a key (never its hash)."""
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "createdAt": record.created_at,
        "lastUsedAt": record.last_used_at,
    }


@router.post("", status_code=201, response_model=ApiKeyCreated, responses=responses(401, 403, 409))
async def create_api_key(body: ApiKeyCreate, services: ServicesDep, who: Admin) -> dict[str, Any]:
    """Create a key with a role; the answer's ``key`` is the secret, shown only here."""
    record, plaintext = await services.api_keys.create(body.name, body.role)
    details = {"name": record.name, "role": record.role}
    await services.audit.append(who, "api_key.create", record.id, details)
    return {**api_key_json(record), "key": plaintext}


@router.get("", response_model=ListOf[ApiKeyPublic], responses=responses(401, 403))
async def list_api_keys(
    services: ServicesDep, _: Admin, page: PageQuery = 1, per_page: PerPageQuery = 100
) -> dict[str, Any]:
    """API keys sorted by name."""
    keys = await services.api_keys.list()
    start = (page - 1) * per_page
    items = [api_key_json(k) for k in keys[start : start + per_page]]
    return {"total": len(keys), "items": items, "page": page, "perPage": per_page}


@router.delete(
    "/{key_id}", status_code=204, response_class=Response, responses=responses(401, 403, 404)
)
async def delete_api_key(
    key_id: Annotated[str, Path(max_length=64)], services: ServicesDep, who: Admin
) -> Response:
    """Revoke an operator: delete its API key (requests with it fail from now on, its open
    ``/events`` streams close at once) and revoke every operator signing key it owns
    (agents get the new revocation list at once)."""
    await services.api_keys.delete(key_id)
    await services.operator_keys.revoke_owner(key_id)
    await services.audit.append(who, "api_key.delete", key_id)
    return Response(status_code=204)
