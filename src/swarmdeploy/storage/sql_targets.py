"""SQL implementation of targets, registration tokens and API keys (shared by both dialects)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from swarmdeploy.protocol.selector import Selector
from swarmdeploy.storage.base import UNCHANGED
from swarmdeploy.storage.common import chunked, like_pattern, unique_tags
from swarmdeploy.storage.errors import NotFound, TokenRejected
from swarmdeploy.storage.records import ApiKeyRecord, Page, TargetRecord, TokenSetRecord
from swarmdeploy.storage.sql_apps import selector_clause
from swarmdeploy.storage.sql_core import SqlCore, as_page
from swarmdeploy.storage.tables import (
    api_key_from_row,
    api_keys,
    target_from_row,
    target_tags,
    target_values,
    targets,
    token_sets,
    tokens,
)


async def _write_tags(conn: AsyncConnection, target_id: str, tags: Sequence[str]) -> None:
    if tags:
        await conn.execute(
            sa.insert(target_tags), [{"target_id": target_id, "tag": tag} for tag in tags]
        )


class SqlTargets(SqlCore):
    """Targets, tokens and API keys."""

    # -- targets -------------------------------------------------------------------------------
    async def get_target(self, target_id: str) -> TargetRecord | None:
        """The target with this id, or ``None``."""
        async with self._tx() as conn:
            row = (await conn.execute(sa.select(targets).where(targets.c.id == target_id))).first()
        return None if row is None else target_from_row(row)

    async def list_targets(
        self,
        *,
        tags: Sequence[str] = (),
        search: str | None = None,
        page: int = 1,
        per_page: int = 100,
        selector: Selector | None = None,
    ) -> Page[TargetRecord]:
        """Targets by id carrying all ``tags``, whose id or name contains ``search``, that
        ``selector`` matches."""
        query = sa.select(targets)
        if selector is not None and not selector.empty:
            query = query.where(selector_clause(selector))
        wanted = unique_tags(tags)
        if wanted:
            having_all = (
                sa.select(target_tags.c.target_id)
                .where(target_tags.c.tag.in_(wanted))
                .group_by(target_tags.c.target_id)
                .having(sa.func.count() == len(wanted))
            )
            query = query.where(targets.c.id.in_(having_all))
        if search:
            pattern = like_pattern(search)
            query = query.where(
                sa.or_(
                    sa.func.lower(targets.c.id).like(pattern, escape="\\"),
                    sa.func.lower(targets.c.name).like(pattern, escape="\\"),
                )
            )
        async with self._tx() as conn:
            total, rows = await self._page(conn, query, [targets.c.id], page, per_page)
        return as_page(total, [target_from_row(r) for r in rows], page, per_page)

    async def update_target(
        self,
        target_id: str,
        *,
        name: Any = UNCHANGED,
        tags: Any = UNCHANGED,
        location: Any = UNCHANGED,
        updated_at: int,
    ) -> TargetRecord:
        """Partial update of name, tags and location; keys never change; ``updated_at`` only
        grows (see :class:`Storage`). ``NotFound``."""
        new_at = sa.literal(updated_at, sa.BigInteger)
        grown = sa.case((targets.c.updated_at >= new_at, targets.c.updated_at + 1), else_=new_at)
        values: dict[str, Any] = {"updated_at": grown}
        if name is not UNCHANGED:
            values["name"] = name
        if tags is not UNCHANGED:
            values["tags"] = list(unique_tags(tags))
        if location is not UNCHANGED:
            values["lat"] = None if location is None else location.lat
            values["lon"] = None if location is None else location.lon
        statement = (
            sa.update(targets).where(targets.c.id == target_id).values(values).returning(targets)
        )
        async with self._write_tx() as conn:
            row = (await conn.execute(statement)).first()
            if row is None:
                raise NotFound(f"target {target_id!r} not found")
            if "tags" in values:
                await conn.execute(
                    sa.delete(target_tags).where(target_tags.c.target_id == target_id)
                )
                await _write_tags(conn, target_id, values["tags"])
        return target_from_row(row)

    async def touch_target(
        self, target_id: str, *, seen_at: int, health: dict[str, Any] | None = None
    ) -> None:
        """Record the last contact (and health report); unknown ids are ignored."""
        values: dict[str, Any] = {"last_seen_at": seen_at}
        if health is not None:
            values["health"] = health
        async with self._write_tx() as conn:
            await conn.execute(sa.update(targets).where(targets.c.id == target_id).values(values))

    async def set_log_request_at(self, target_id: str, at: int) -> None:
        """Remember the time of the newest requested log; unknown ids are ignored."""
        statement = sa.update(targets).where(targets.c.id == target_id).values(log_request_at=at)
        async with self._write_tx() as conn:
            await conn.execute(statement)

    async def delete_target(self, target_id: str) -> TargetRecord:
        """Delete the target and its tags (logs and per-task rows stay); ``NotFound``."""
        statement = sa.delete(targets).where(targets.c.id == target_id).returning(targets)
        async with self._write_tx() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            raise NotFound(f"target {target_id!r} not found")
        return target_from_row(row)

    async def match_targets(
        self, ids: Sequence[str], tags: Sequence[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Targets named in ``ids`` or carrying any of ``tags`` (no limit), sorted by id."""
        found: dict[str, set[str]] = {}
        async with self._tx() as conn:
            for part in chunked(sorted(set(ids)), self.in_chunk):
                query = sa.select(targets.c.id).where(targets.c.id.in_(part))
                for target_id in (await conn.scalars(query)).all():
                    found.setdefault(target_id, set())
            for part in chunked(sorted(set(tags)), self.in_chunk):
                query = sa.select(target_tags.c.target_id, target_tags.c.tag).where(
                    target_tags.c.tag.in_(part)
                )
                for target_id, tag in (await conn.execute(query)).all():
                    found.setdefault(target_id, set()).add(tag)
        return [(t, tuple(sorted(found[t]))) for t in sorted(found)]

    async def target_curve_keys(self) -> list[tuple[str, str]]:
        """``(target_id, curve_key)`` of every target, sorted by id."""
        query = sa.select(targets.c.id, targets.c.curve_key).order_by(targets.c.id)
        async with self._tx() as conn:
            return [(i, k) for i, k in (await conn.execute(query)).all()]

    async def count_targets(self) -> int:
        """Number of registered targets."""
        async with self._tx() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count()).select_from(targets))).scalar_one()
            )

    # -- registration tokens -------------------------------------------------------------------
    def _token_sets_query(self, now: int) -> sa.Select[Any]:
        available = (
            sa.select(sa.func.count())
            .where(tokens.c.set_name == token_sets.c.name, tokens.c.expires_at > now)
            .scalar_subquery()
        )
        return sa.select(token_sets, available.label("available"))

    @staticmethod
    def _token_set(row: sa.Row[Any]) -> TokenSetRecord:
        m = row._mapping
        return TokenSetRecord(
            m["name"], m["total"], m["available"], m["created_at"], m["expires_at"]
        )

    async def create_token_set(
        self, name: str, token_hashes: Sequence[bytes], *, created_at: int, expires_at: int
    ) -> TokenSetRecord:
        """Store a token set; ``Conflict`` if the name or a token hash exists."""
        row = {
            "name": name,
            "total": len(token_hashes),
            "created_at": created_at,
            "expires_at": expires_at,
        }
        async with self._write_tx() as conn:
            await conn.execute(sa.insert(token_sets).values(row))
            if token_hashes:
                await conn.execute(
                    sa.insert(tokens),
                    [{"hash": h, "set_name": name, "expires_at": expires_at} for h in token_hashes],
                )
        available = len(token_hashes) if expires_at > created_at else 0
        return TokenSetRecord(name, len(token_hashes), available, created_at, expires_at)

    async def get_token_set(self, name: str, *, now: int) -> TokenSetRecord | None:
        """The set with its count of available tokens at ``now``, or ``None``."""
        query = self._token_sets_query(now).where(token_sets.c.name == name)
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else self._token_set(row)

    async def list_token_sets(
        self, *, now: int, page: int = 1, per_page: int = 100
    ) -> Page[TokenSetRecord]:
        """Token sets newest first (ties by name)."""
        order = [token_sets.c.created_at.desc(), token_sets.c.name]
        async with self._tx() as conn:
            total, rows = await self._page(conn, self._token_sets_query(now), order, page, per_page)
        return as_page(total, [self._token_set(r) for r in rows], page, per_page)

    async def delete_token_set(self, name: str) -> None:
        """Delete a set and its unspent tokens; raises ``NotFound``."""
        async with self._write_tx() as conn:
            result = await conn.execute(sa.delete(token_sets).where(token_sets.c.name == name))
            if result.rowcount == 0:
                raise NotFound(f"token set {name!r} not found")

    async def purge_expired_tokens(self, *, now: int) -> int:
        """Delete tokens with ``expires_at <= now``; returns how many."""
        async with self._write_tx() as conn:
            result = await conn.execute(sa.delete(tokens).where(tokens.c.expires_at <= now))
        return int(result.rowcount)

    async def register_target(
        self, token_hash: bytes, target: TargetRecord, *, now: int
    ) -> TargetRecord:
        """Spend the token and insert the target in one transaction.

        The ``DELETE ... RETURNING`` takes the token row's write lock, so a concurrent
        registration with the same token waits and then finds nothing. If the insert
        conflicts, the exception rolls the transaction back and the token stays unspent.
        """
        spend = (
            sa.delete(tokens)
            .where(tokens.c.hash == token_hash, tokens.c.expires_at > now)
            .returning(tokens.c.set_name)
        )
        async with self._write_tx() as conn:
            set_name = (await conn.execute(spend)).scalar_one_or_none()
            if set_name is None:
                raise TokenRejected("registration token unknown, expired or spent")
            stored = dataclasses.replace(target, token_set=set_name, tags=unique_tags(target.tags))
            await conn.execute(sa.insert(targets).values(target_values(stored)))
            await _write_tags(conn, stored.id, stored.tags)
        return dataclasses.replace(stored, health=copy.deepcopy(stored.health))

    # -- API keys ------------------------------------------------------------------------------
    async def add_api_key(self, key: ApiKeyRecord) -> None:
        """Store a key; ``Conflict`` if the id or the name exists."""
        async with self._write_tx() as conn:
            await conn.execute(sa.insert(api_keys).values(dataclasses.asdict(key)))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, or ``None``."""
        async with self._tx() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        return None if row is None else api_key_from_row(row)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """All keys sorted by name."""
        async with self._tx() as conn:
            rows = (await conn.execute(sa.select(api_keys).order_by(api_keys.c.name))).all()
        return [api_key_from_row(r) for r in rows]

    async def delete_api_key(self, key_id: str) -> None:
        """Delete a key; raises ``NotFound``."""
        async with self._write_tx() as conn:
            result = await conn.execute(sa.delete(api_keys).where(api_keys.c.id == key_id))
            if result.rowcount == 0:
                raise NotFound(f"API key {key_id!r} not found")

    async def touch_api_key(self, key_id: str, at: int) -> None:
        """Record the last use of a key; unknown ids are ignored."""
        async with self._write_tx() as conn:
            await conn.execute(
                sa.update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at)
            )
