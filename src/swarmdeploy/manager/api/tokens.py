"""``/token_sets`` (admin): registration token sets; plaintext tokens are shown once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from swarmdeploy.manager.api.deps import Admin, PageQuery, PerPageQuery, ServicesDep
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import (
    NAME_PATTERN,
    ListOf,
    TokenSetCreate,
    TokenSetCreated,
    TokenSetPublic,
)
from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.storage.records import TokenSetRecord

router = APIRouter(prefix="/token_sets", tags=["token sets"])

SetName = Annotated[str, Path(max_length=128, description="Token set name.")]


def token_set_json(record: TokenSetRecord) -> dict[str, Any]:
    """The API document of a token set."""
    return {
        "name": record.name,
        "total": record.total,
        "available": record.available,
        "createdAt": record.created_at,
        "expiresAt": record.expires_at,
    }


def _fields(
    body: TokenSetCreate | None, name: str | None, total: int | None, expires_in: int | None
) -> TokenSetCreate:
    if body is not None:
        if any(v is not None for v in (name, total, expires_in)):
            raise InvalidInput(
                "give the fields either as query parameters or as a JSON body, not both",
                path="$",
            )
        return body
    if name is None:
        raise InvalidInput("query.name: field required", path="query.name")
    if total is None:
        raise InvalidInput("query.total: field required", path="query.total")
    return TokenSetCreate(name=name, total=total, expires_in=expires_in)


@router.post(
    "", status_code=201, response_model=TokenSetCreated, responses=responses(401, 403, 409)
)
async def create_token_set(
    services: ServicesDep,
    who: Admin,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    total: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    expires_in: Annotated[int | None, Query(alias="expiresIn", ge=60, le=365 * 86400)] = None,
    body: Annotated[TokenSetCreate | None, Body()] = None,
) -> dict[str, Any]:
    """Create a set of ``total`` single-use tokens named ``name`` (query parameters as in the
    original, or a JSON body). The answer carries the plaintext ``tokens`` -- only once."""
    fields = _fields(body, name, total, expires_in)
    record, tokens = await services.tokens.create(
        fields.name, fields.total, expires_in_s=fields.expires_in
    )
    await services.audit.append(who, "token_set.create", fields.name, {"total": fields.total})
    return {**token_set_json(record), "tokens": tokens}


@router.get("", response_model=ListOf[TokenSetPublic], responses=responses(401, 403))
async def list_token_sets(
    services: ServicesDep, _: Admin, page: PageQuery = 1, per_page: PerPageQuery = 100
) -> dict[str, Any]:
    """Token sets, newest first (without tokens)."""
    result = await services.tokens.list(page=page, per_page=per_page)
    items = [token_set_json(r) for r in result.items]
    return {"total": result.total, "items": items, "page": page, "perPage": per_page}


@router.get("/{name}", response_model=TokenSetPublic, responses=responses(401, 403, 404))
async def get_token_set(name: SetName, services: ServicesDep, _: Admin) -> dict[str, Any]:
    """One token set; 404 if unknown."""
    return token_set_json(await services.tokens.get(name))


@router.delete(
    "/{name}", status_code=204, response_class=Response, responses=responses(401, 403, 404)
)
async def delete_token_set(name: SetName, services: ServicesDep, who: Admin) -> Response:
    """Delete a set; its unspent tokens stop working at once. 404 if unknown."""
    await services.tokens.delete(name)
    await services.audit.append(who, "token_set.delete", name)
    return Response(status_code=204)
