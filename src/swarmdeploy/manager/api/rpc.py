"""``/rpc``: device registration with a token, and the public server info."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from swarmdeploy import __version__
from swarmdeploy.crypto import curve
from swarmdeploy.crypto.ca import parse_identity_key
from swarmdeploy.crypto.errors import InvalidKey
from swarmdeploy.manager.api.deps import ServicesDep, Viewer, get_services
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import (
    RegistrationCreate,
    RegistrationPublic,
    ServerInfo,
    WhoAmI,
)
from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.services.registration import DeviceInfo
from swarmdeploy.storage.records import Location

router = APIRouter(prefix="/rpc", tags=["rpc"])


def server_info_json(services: Services) -> dict[str, Any]:
    """What an agent needs to connect."""
    keys, settings = services.keys, services.settings
    return {
        "zeromq": {
            "publicKey": keys.curve.public,
            "pubPort": settings.zmq_pub_port,
            "subPort": settings.zmq_sub_port,
        },
        "caCertificate": keys.ca.cert_pem().decode("ascii"),
        "caPublicKey": base64.b64encode(keys.ca.public_key_raw).decode("ascii"),
        "version": __version__,
    }


def client_address(request: Request) -> str:
    """The client's address (from ``X-Forwarded-For`` only behind a trusted proxy)."""
    return request.client.host if request.client else "unknown"


async def rate_limit(request: Request) -> None:
    """Count the attempt before the body is even validated (429 + Retry-After)."""
    get_services(request).registration.check_rate(client_address(request))


def _device(body: RegistrationCreate) -> DeviceInfo:
    try:
        curve_key = curve.validate_public_key(body.public_key)
    except InvalidKey as exc:
        raise InvalidInput(str(exc), path="$.publicKey") from None
    try:
        identity = parse_identity_key(body.identity_key)
    except InvalidKey as exc:
        raise InvalidInput(str(exc), path="$.identityKey") from None
    loc = body.location
    return DeviceInfo(
        id=body.id,
        curve_key=curve_key,
        identity_key=identity,
        name=body.name,
        tags=tuple(dict.fromkeys(body.tags)),
        location=None if loc is None else Location(loc.lat, loc.lon),
    )


@router.post(
    "/targets",
    status_code=201,
    response_model=RegistrationPublic,
    responses=responses(401, 409, 429),
    dependencies=[Depends(rate_limit)],
)
async def register_target(
    request: Request,
    body: RegistrationCreate,
    services: ServicesDep,
    x_auth_token: Annotated[
        str | None, Header(max_length=64, description="Registration token xxxx-xxxx-xxxx.")
    ] = None,
) -> dict[str, Any]:
    """Register a device with a single-use token (``X-Auth-Token``). 401 if the token is
    missing, malformed, unknown, expired or spent; 409 if the id exists (the token stays
    valid); 429 when attempts from this address come too fast."""
    registered = await services.registration.register(
        x_auth_token, _device(body), address=client_address(request)
    )
    return {
        **server_info_json(services),
        "id": registered.target.id,
        "certificate": registered.certificate_pem,
        "signature": registered.signature_b64,
    }


@router.get("/server_info", response_model=ServerInfo)
async def server_info(services: ServicesDep) -> dict[str, Any]:
    """Public: the manager's CurveZMQ key and ports and its CA certificate."""
    return server_info_json(services)


@router.get("/whoami", response_model=WhoAmI, responses=responses(401, 403))
async def whoami(principal: Viewer) -> dict[str, Any]:
    """The caller's name and role (what a client such as the web GUI may offer it)."""
    return {
        "name": principal.name,
        "role": principal.role,
        "via": principal.via,
        "auditName": principal.audit_name,
    }
