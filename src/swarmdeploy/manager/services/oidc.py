"""OpenID Connect: accept bearer JWTs from one configured issuer and map a claim to a role.

Seed 003 §4.3 step 2 names OpenID Connect for operator authentication. A token is accepted
when its signature verifies with a key from the issuer's JWKS (fetched over HTTP(S), cached
for five minutes, refetched when an unknown ``kid`` appears), ``iss`` and ``aud`` match the
configuration and ``exp`` is in the future (30 s leeway). The role comes from the claim named
by ``role_claim`` (a dotted path such as ``realm_access.roles``; a string or a list of
strings), each value mapped through ``role_map`` (values that are role names map to
themselves); the highest role wins. A valid token without a usable role gets 403.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import jwt

from swarmdeploy.manager.errors import Forbidden, Unauthorized, Unavailable
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.settings import ROLES, Role

log = logging.getLogger(__name__)

#: Asymmetric algorithms only: an ``HS256`` token signed with a public key must not pass.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]


def _claim(claims: Mapping[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def role_from_claims(
    claims: Mapping[str, Any], role_claim: str, role_map: Mapping[str, Role]
) -> Role | None:
    """The highest role that the claim's value(s) map to, or ``None``."""
    raw = _claim(claims, role_claim)
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    best: Role | None = None
    for value in values:
        if not isinstance(value, str):
            continue
        role = role_map.get(value) or next((r for r in ROLES if r == value), None)
        if role is not None and (best is None or ROLES.index(role) > ROLES.index(best)):
            best = role
    return best


class OidcVerifier:
    """Verifies JWTs of one issuer against its JWKS (network I/O runs in a worker thread)."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audience: str,
        role_claim: str,
        role_map: Mapping[str, Role],
        timeout_s: float = 5.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.role_map = dict(role_map)
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=timeout_s)

    def _decode(self, token: str) -> dict[str, Any]:
        key = self._jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            audience=self.audience,
            issuer=self.issuer,
            leeway=30,
            options={"require": ["exp", "iss", "aud"]},
        )
        return claims

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token.

        Raises :class:`Unauthorized` for an invalid token, :class:`Forbidden` when it carries no
        usable role, :class:`Unavailable` when the JWKS cannot be fetched.
        """
        try:
            claims = await asyncio.to_thread(self._decode, token)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("cannot fetch the OIDC JWKS: %s", exc)
            raise Unavailable("the identity provider's keys cannot be fetched") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        role = role_from_claims(claims, self.role_claim, self.role_map)
        name = str(claims.get("preferred_username") or claims.get("email") or claims.get("sub"))
        if role is None:
            raise Forbidden(f"the token of {name} grants no swarmdeploy role")
        return Principal(name=name, role=role, via="oidc")
