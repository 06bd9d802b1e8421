"""The storage contract for signed task manifests, on every backend."""

from __future__ import annotations

import pytest

from swarmdeploy.storage import Conflict, Storage
from swarmdeploy.storage.records import TaskSignatureRecord
from tests.storage.helpers import task


def signature(
    task_id: str = "t1", *, kind: str = "deploy", sequence: int = 1
) -> TaskSignatureRecord:
    """A signed manifest with opaque bytes (including bytes that are not UTF-8)."""
    return TaskSignatureRecord(
        task_id=task_id,
        kind=kind,
        manifest=b'{"task_id":"' + task_id.encode() + b'"}\xff',
        signature=bytes(range(64)),
        certificate=b'{"body":"x","signature":"y"}',
        sequence=sequence,
        key_id="k" * 32,
        signed_at=1_700_000_000_000,
    )


async def test_task_signature_round_trips_with_its_bytes(storage: Storage) -> None:
    assert await storage.last_task_sequence() == 0
    await storage.add_task_signature(signature())
    assert await storage.get_task_signature("t1", "deploy") == signature()
    assert await storage.get_task_signature("t1", "build") is None
    assert await storage.get_task_signature("t2", "deploy") is None


async def test_task_signature_with_known_task_kind_or_sequence_is_refused(
    storage: Storage,
) -> None:
    await storage.add_task_signature(signature())
    with pytest.raises(Conflict):
        await storage.add_task_signature(signature(sequence=2))  # same task and kind
    with pytest.raises(Conflict):
        await storage.add_task_signature(signature("t2", sequence=1))  # same sequence
    await storage.add_task_signature(signature(kind="build", sequence=2))
    assert await storage.last_task_sequence() == 2
    assert await storage.get_task_signature("t2", "deploy") is None


async def test_sequence_never_goes_back_when_the_task_is_deleted(storage: Storage) -> None:
    await storage.add_task(task("t9"), [])
    await storage.add_task_signature(signature("t9", sequence=5))
    await storage.add_task_signature(signature("t1", sequence=3))
    assert await storage.last_task_sequence() == 5
    await storage.delete_task("t9")
    assert await storage.last_task_sequence() == 5
