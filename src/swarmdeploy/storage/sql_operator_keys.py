"""SQL implementation of operator signing keys (shared by both dialects; ADR 0004)."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import OperatorKeyRecord
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import operator_keys


def operator_key_from_row(row: sa.Row[Any]) -> OperatorKeyRecord:
    """Rebuild an :class:`OperatorKeyRecord` from an ``operator_keys`` row."""
    m = row._mapping
    return OperatorKeyRecord(
        id=m["id"],
        name=m["name"],
        owner=m["owner"],
        role=m["role"],
        public_key=bytes(m["public_key"]),
        certificate=bytes(m["certificate"]),
        sealed_seed=bytes(m["sealed_seed"]),
        serial=m["serial"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )


class SqlOperatorKeys(SqlCore):
    """Operator signing keys with their certificates and sealed seeds."""

    async def add_operator_key(self, key: OperatorKeyRecord) -> None:
        """Insert the key; ``Conflict`` (translated) if its id or serial exists."""
        async with self._write_tx() as conn:
            await conn.execute(sa.insert(operator_keys).values(dataclasses.asdict(key)))

    async def get_operator_key(self, key_id: str) -> OperatorKeyRecord | None:
        """The key or ``None``."""
        query = sa.select(operator_keys).where(operator_keys.c.id == key_id)
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else operator_key_from_row(row)

    async def list_operator_keys(self, *, owner: str | None = None) -> list[OperatorKeyRecord]:
        """Keys (of ``owner``) by ``(created_at, id)``."""
        query = sa.select(operator_keys).order_by(operator_keys.c.created_at, operator_keys.c.id)
        if owner is not None:
            query = query.where(operator_keys.c.owner == owner)
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
        return [operator_key_from_row(r) for r in rows]

    async def revoke_operator_key(self, key_id: str, at: int) -> OperatorKeyRecord:
        """Set ``revoked_at`` unless set (``COALESCE`` keeps the first); ``NotFound``."""
        async with self._write_tx() as conn:
            await conn.execute(
                sa.update(operator_keys)
                .where(operator_keys.c.id == key_id)
                .values(revoked_at=sa.func.coalesce(operator_keys.c.revoked_at, at))
            )
            query = sa.select(operator_keys).where(operator_keys.c.id == key_id)
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"operator key {key_id!r} not found")
        return operator_key_from_row(row)
