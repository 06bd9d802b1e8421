"""Operator authentication (API keys, bootstrap admin key, optional OIDC) and roles.

Roles are ordered ``viewer < operator < admin``: a role allows everything a lower one does.
``viewer`` reads; ``operator`` also deploys, stops, edits targets and uses the terminal;
``admin`` also manages token sets and API keys and deletes (revokes) targets.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal, Protocol

from swarmdeploy.crypto import tokens as crypto_tokens
from swarmdeploy.crypto.errors import InvalidToken
from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import ConflictError, NotFoundError, Unauthorized
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.settings import ROLES, Role
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.records import ApiKeyRecord

log = logging.getLogger(__name__)

#: Skip recording a key's last use when it was recorded less than this long ago (ms).
_TOUCH_EVERY_MS = 60_000


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``name`` for audit lines, ``role`` for authorisation."""

    name: str
    role: Role
    via: Literal["admin-key", "api-key", "oidc"]
    key_id: str | None = None

    def allows(self, needed: Role) -> bool:
        """Whether this principal's role includes ``needed``."""
        return ROLES.index(self.role) >= ROLES.index(needed)

    @property
    def audit_name(self) -> str:
        """How audit log lines name the caller, e.g. ``key ci-bot (3f9a0c1d2e4b)``."""
        if self.via == "api-key":
            return f"key {self.name} ({self.key_id})"
        if self.via == "oidc":
            return f"oidc {self.name}"
        return "bootstrap admin key"


class TokenVerifier(Protocol):
    """Verifies bearer JWTs (implemented by ``services.oidc.OidcVerifier``)."""

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; raises ``Unauthorized``/``Forbidden``/``Unavailable``."""


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the three dot-separated parts of a compact JWS."""
    return token.count(".") == 2 and all(token.split("."))


class ApiKeyService:
    """Create, list and delete API keys (only keyed hashes are stored)."""

    def __init__(
        self, storage: Storage, *, secret: bytes, clock: Clock, events: EventHub | None = None
    ) -> None:
        self._storage = storage
        self._secret = secret
        self._clock = clock
        self._events = events

    async def create(self, name: str, role: Role) -> tuple[ApiKeyRecord, str]:
        """A new key; returns the record and the plaintext key (shown once)."""
        key_id, plaintext = crypto_tokens.generate_api_key()
        record = ApiKeyRecord(
            id=key_id,
            name=name,
            role=role,
            key_hash=crypto_tokens.hash_api_key(self._secret, plaintext),
            created_at=self._clock(),
        )
        try:
            await self._storage.add_api_key(record)
        except Conflict:
            raise ConflictError(f"an API key named {name} exists already") from None
        log.info("created API key %s (%s) with role %s", name, key_id, role)
        return record, plaintext

    async def list(self) -> list[ApiKeyRecord]:
        """All keys sorted by name."""
        return await self._storage.list_api_keys()

    async def delete(self, key_id: str) -> None:
        """Delete a key; :class:`NotFoundError` if unknown. Takes effect immediately: the
        next request with it fails, and its open ``/events`` streams are closed now."""
        try:
            await self._storage.delete_api_key(key_id)
        except NotFound:
            raise NotFoundError(f"API key {key_id} is not found") from None
        closed = self._events.disconnect(key_id) if self._events is not None else 0
        log.info("deleted API key %s (closed %d event stream(s))", key_id, closed)


class Authenticator:
    """Turns a bearer credential into a :class:`Principal` or raises :class:`Unauthorized`."""

    def __init__(
        self,
        storage: Storage,
        *,
        secret: bytes,
        admin_key: str,
        clock: Clock,
        oidc: TokenVerifier | None = None,
    ) -> None:
        self._storage = storage
        self._secret = secret
        self._admin_hash = crypto_tokens.hash_api_key(secret, admin_key)
        self._clock = clock
        self._oidc = oidc

    async def authenticate(self, credential: str) -> Principal:
        """The principal for ``credential`` (API key, admin key or OIDC JWT)."""
        given = crypto_tokens.hash_api_key(self._secret, credential)
        if crypto_tokens.digests_equal(given, self._admin_hash):
            return Principal(name="admin", role="admin", via="admin-key")
        if credential.startswith(f"{crypto_tokens.API_KEY_PREFIX}_"):
            return await self._api_key(credential, given)
        if self._oidc is not None and looks_like_jwt(credential):
            return await self._oidc.verify(credential)
        raise Unauthorized("invalid credentials")

    async def _api_key(self, credential: str, given: bytes) -> Principal:
        try:
            key_id = crypto_tokens.parse_api_key(credential)
        except InvalidToken:
            raise Unauthorized("invalid credentials") from None
        record = await self._storage.get_api_key(key_id)
        if record is None or not crypto_tokens.digests_equal(given, record.key_hash):
            raise Unauthorized("invalid credentials")
        now = self._clock()
        if record.last_used_at is None or now - record.last_used_at >= _TOUCH_EVERY_MS:
            await self._storage.touch_api_key(key_id, now)
        return Principal(name=record.name, role=record.role, via="api-key", key_id=key_id)
