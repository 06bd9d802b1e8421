"""The storage contract for operator signing keys, on every backend."""

from __future__ import annotations

import dataclasses

import pytest

from swarmdeploy.storage import Conflict, NotFound, Storage
from swarmdeploy.storage.records import OperatorKeyRecord


def operator_key(
    key_id: str = "a" * 32, *, owner: str = "k-ops", serial: int = 7, created_at: int = 10
) -> OperatorKeyRecord:
    """An operator key of ``owner`` with opaque certificate and sealed-seed bytes."""
    return OperatorKeyRecord(
        id=key_id,
        name="ops",
        owner=owner,
        role="operator",
        public_key=bytes(range(32)),
        certificate=b'{"body":"x","signature":"y"}',
        sealed_seed=b"\x00sealed\xff",
        serial=serial,
        created_at=created_at,
    )


async def test_operator_key_round_trips_with_its_bytes(storage: Storage) -> None:
    await storage.add_operator_key(operator_key())
    assert await storage.get_operator_key("a" * 32) == operator_key()
    assert await storage.get_operator_key("b" * 32) is None


async def test_operator_key_with_known_id_or_serial_is_refused(storage: Storage) -> None:
    await storage.add_operator_key(operator_key())
    with pytest.raises(Conflict):
        await storage.add_operator_key(operator_key(serial=8))
    with pytest.raises(Conflict):
        await storage.add_operator_key(operator_key("b" * 32))
    assert [k.id for k in await storage.list_operator_keys()] == ["a" * 32]


async def test_operator_keys_are_listed_oldest_first_and_by_owner(storage: Storage) -> None:
    await storage.add_operator_key(operator_key("b" * 32, serial=2, created_at=30))
    await storage.add_operator_key(operator_key("c" * 32, owner="k-adm", serial=3, created_at=20))
    await storage.add_operator_key(operator_key("a" * 32, serial=1, created_at=30))
    assert [k.id for k in await storage.list_operator_keys()] == ["c" * 32, "a" * 32, "b" * 32]
    assert [k.id for k in await storage.list_operator_keys(owner="k-ops")] == ["a" * 32, "b" * 32]
    assert await storage.list_operator_keys(owner="nobody") == []


async def test_revoking_a_key_keeps_the_first_time(storage: Storage) -> None:
    await storage.add_operator_key(operator_key())
    revoked = await storage.revoke_operator_key("a" * 32, 100)
    assert revoked == dataclasses.replace(operator_key(), revoked_at=100)
    assert (await storage.revoke_operator_key("a" * 32, 200)).revoked_at == 100
    assert await storage.get_operator_key("a" * 32) == revoked


async def test_revoking_an_unknown_key_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.revoke_operator_key("f" * 32, 1)
