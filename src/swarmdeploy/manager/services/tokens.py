"""Registration token sets: create (tokens shown once), list, get, delete, purge expired."""

from __future__ import annotations

import logging

from swarmdeploy.crypto import tokens as crypto_tokens
from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import ConflictError, NotFoundError
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.records import Page, TokenSetRecord

log = logging.getLogger(__name__)

#: Most tokens in one set.
MAX_TOKENS_PER_SET = 10_000


class TokenService:
    """Token sets; only keyed hashes of tokens are stored (``crypto.tokens``)."""

    def __init__(
        self, storage: Storage, *, secret: bytes, clock: Clock, default_expiry_s: int
    ) -> None:
        self._storage = storage
        self._secret = secret
        self._clock = clock
        self.default_expiry_s = default_expiry_s

    async def create(
        self, name: str, total: int, *, expires_in_s: int | None = None
    ) -> tuple[TokenSetRecord, list[str]]:
        """Create set ``name`` with ``total`` fresh tokens; returns the set and the plaintext
        tokens (never retrievable again). Raises :class:`ConflictError` if the name is taken."""
        if not 1 <= total <= MAX_TOKENS_PER_SET:
            raise ValueError(f"total must be between 1 and {MAX_TOKENS_PER_SET}")
        now = self._clock()
        if await self._storage.get_token_set(name, now=now) is not None:
            raise ConflictError(f"token set name is not unique: {name}")
        plain: set[str] = set()
        while len(plain) < total:
            plain.add(crypto_tokens.generate_token())
        tokens = sorted(plain)
        hashes = [crypto_tokens.hash_token(self._secret, t) for t in tokens]
        expires_at = now + 1000 * (expires_in_s or self.default_expiry_s)
        try:
            record = await self._storage.create_token_set(
                name, hashes, created_at=now, expires_at=expires_at
            )
        except Conflict:
            raise ConflictError(f"token set name is not unique: {name}") from None
        log.info("created token set %s with %d token(s)", name, total)
        return record, tokens

    async def get(self, name: str) -> TokenSetRecord:
        """The set; :class:`NotFoundError` if unknown."""
        record = await self._storage.get_token_set(name, now=self._clock())
        if record is None:
            raise NotFoundError(f"token set {name} is not found")
        return record

    async def list(self, *, page: int, per_page: int) -> Page[TokenSetRecord]:
        """Token sets, newest first."""
        return await self._storage.list_token_sets(now=self._clock(), page=page, per_page=per_page)

    async def delete(self, name: str) -> None:
        """Delete the set and its unspent tokens; :class:`NotFoundError` if unknown."""
        try:
            await self._storage.delete_token_set(name)
        except NotFound:
            raise NotFoundError(f"token set {name} is not found") from None
        log.info("deleted token set %s", name)

    async def purge_expired(self) -> int:
        """Delete expired tokens (background job); returns how many."""
        count = await self._storage.purge_expired_tokens(now=self._clock())
        if count:
            log.info("purged %d expired registration token(s)", count)
        return count
