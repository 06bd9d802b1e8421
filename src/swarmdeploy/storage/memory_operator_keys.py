"""Operator signing keys of the in-memory storage (no awaits: every call is atomic with
respect to other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

import dataclasses

from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import OperatorKeyRecord


class MemoryOperatorKeys:
    """The operator-key methods of ``MemoryStorage`` (a mixin)."""

    _state: StorageState
    _operator_keys: dict[str, OperatorKeyRecord]

    async def add_operator_key(self, key: OperatorKeyRecord) -> None:
        """Store the key; ``Conflict`` if its id or serial exists."""
        require_open(self._state)
        if key.id in self._operator_keys or any(
            k.serial == key.serial for k in self._operator_keys.values()
        ):
            raise Conflict(f"operator key {key.id!r} or serial {key.serial} exists")
        self._operator_keys[key.id] = key

    async def get_operator_key(self, key_id: str) -> OperatorKeyRecord | None:
        """The key or ``None``."""
        require_open(self._state)
        return self._operator_keys.get(key_id)

    async def list_operator_keys(self, *, owner: str | None = None) -> list[OperatorKeyRecord]:
        """Keys (of ``owner``) by ``(created_at, id)``."""
        require_open(self._state)
        found = (k for k in self._operator_keys.values() if owner in (None, k.owner))
        return sorted(found, key=lambda k: (k.created_at, k.id))

    async def revoke_operator_key(self, key_id: str, at: int) -> OperatorKeyRecord:
        """Set ``revoked_at`` unless set; ``NotFound``."""
        require_open(self._state)
        key = self._operator_keys.get(key_id)
        if key is None:
            raise NotFound(f"operator key {key_id!r} not found")
        if key.revoked_at is None:
            key = dataclasses.replace(key, revoked_at=at)
            self._operator_keys[key_id] = key
        return key
