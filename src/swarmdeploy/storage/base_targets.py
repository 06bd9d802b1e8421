"""Targets, registration tokens and API keys.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_targets.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from swarmdeploy.protocol.selector import Selector
from swarmdeploy.storage.records import (
    ApiKeyRecord,
    Page,
    TargetRecord,
    TokenSetRecord,
)

#: Marker for "leave this field unchanged" in partial updates.
UNCHANGED: Any = object()


class TargetStore(abc.ABC):
    """Registered targets (devices): read, list, update, delete, match."""

    @abc.abstractmethod
    async def get_target(self, target_id: str) -> TargetRecord | None:
        """The target with this id, or ``None``."""

    @abc.abstractmethod
    async def list_targets(
        self,
        *,
        tags: Sequence[str] = (),
        search: str | None = None,
        page: int = 1,
        per_page: int = 100,
        selector: Selector | None = None,
    ) -> Page[TargetRecord]:
        """Targets sorted by id. ``tags``: the target must carry all of them (AND).
        ``search``: case-insensitive substring of id or name. ``selector``: the target must
        match it (``docs/selectors.md``; an empty one filters nothing)."""

    @abc.abstractmethod
    async def update_target(
        self,
        target_id: str,
        *,
        name: Any = UNCHANGED,
        tags: Any = UNCHANGED,
        location: Any = UNCHANGED,
        updated_at: int,
    ) -> TargetRecord:
        """Partial update: only the given fields change (``location=None`` clears it).
        Keys are never touched. Raises :class:`NotFound`.

        The stored ``updated_at`` grows strictly: it is ``updated_at``, or the previous value
        plus 1 when that is not older (a clock that went back). It is the revision of the
        target's ``config`` (docs/protocol.md §6.8), which agents apply only when newer."""

    @abc.abstractmethod
    async def touch_target(
        self, target_id: str, *, seen_at: int, health: dict[str, Any] | None = None
    ) -> None:
        """Record that the agent was heard from (and its latest health report, if given).
        Unknown ids are ignored."""

    @abc.abstractmethod
    async def set_log_request_at(self, target_id: str, at: int) -> None:
        """Remember the time of the newest log received on request."""

    @abc.abstractmethod
    async def delete_target(self, target_id: str) -> TargetRecord:
        """Delete the target (its logs stay). Returns what was deleted; raises :class:`NotFound`."""

    @abc.abstractmethod
    async def match_targets(
        self, ids: Sequence[str], tags: Sequence[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """All targets whose id is in ``ids`` or that carry any tag in ``tags``, without any
        paging limit, sorted by id. Each item is ``(target_id, matching_tags)``; the tuple is
        empty when the target matched by id only."""

    @abc.abstractmethod
    async def target_curve_keys(self) -> list[tuple[str, str]]:
        """``(target_id, curve_key)`` for every registered target (for the ZAP allow-list)."""

    @abc.abstractmethod
    async def count_targets(self) -> int:
        """Number of registered targets."""


class TokenStore(abc.ABC):
    """Registration token sets and the registration that spends a token."""

    @abc.abstractmethod
    async def create_token_set(
        self, name: str, token_hashes: Sequence[bytes], *, created_at: int, expires_at: int
    ) -> TokenSetRecord:
        """Store a token set with the hashes of its tokens. Raises :class:`Conflict` if the
        name is taken."""

    @abc.abstractmethod
    async def get_token_set(self, name: str, *, now: int) -> TokenSetRecord | None:
        """The set with ``available`` = unspent tokens that expire after ``now``."""

    @abc.abstractmethod
    async def list_token_sets(
        self, *, now: int, page: int = 1, per_page: int = 100
    ) -> Page[TokenSetRecord]:
        """Token sets sorted by creation time, newest first."""

    @abc.abstractmethod
    async def delete_token_set(self, name: str) -> None:
        """Delete a set and its unspent tokens. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def purge_expired_tokens(self, *, now: int) -> int:
        """Delete tokens that expired at or before ``now``; returns how many."""

    @abc.abstractmethod
    async def register_target(
        self, token_hash: bytes, target: TargetRecord, *, now: int
    ) -> TargetRecord:
        """Atomically spend the token with this hash and create ``target`` (its
        ``token_set`` filled in). Raises :class:`TokenRejected` if the token is unknown,
        expired or spent, :class:`Conflict` if the target id or its ``curve_key`` is
        registered already (the token is then *not* spent)."""


class ApiKeyStore(abc.ABC):
    """API keys of operators and services."""

    @abc.abstractmethod
    async def add_api_key(self, key: ApiKeyRecord) -> None:
        """Store an API key. Raises :class:`Conflict` if the id or name exists."""

    @abc.abstractmethod
    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id (the public prefix of the token), or ``None``."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """All API keys sorted by name."""

    @abc.abstractmethod
    async def delete_api_key(self, key_id: str) -> None:
        """Delete a key. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def touch_api_key(self, key_id: str, at: int) -> None:
        """Record the last use of a key."""
