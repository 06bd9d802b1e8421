"""FastAPI dependencies: the service container, authentication and roles, paging."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from swarmdeploy.manager.errors import Forbidden, Unauthorized
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.settings import Role
from swarmdeploy.storage.records import MAX_PER_PAGE

bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`sdk_...`), the bootstrap admin key, or an OpenID Connect JWT.",
)


def get_services(request: Request) -> Services:
    """The app's service container."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(services: Services, credential: str | None) -> Principal:
    """The principal for a bearer credential; :class:`Unauthorized` if missing or invalid."""
    if not credential:
        raise Unauthorized("authentication required: Authorization: Bearer <api-key>")
    return await services.auth.authenticate(credential)


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and demands at least ``role``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        principal = await authenticate(
            get_services(request), credentials.credentials if credentials else None
        )
        if not principal.allows(role):
            raise Forbidden(f"this needs the {role} role; {principal.name} is {principal.role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]

PageQuery = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")]
PerPageQuery = Annotated[
    int, Query(alias="perPage", ge=1, le=MAX_PER_PAGE, description="Items per page (1-1000).")
]
