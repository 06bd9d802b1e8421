"""The storage contract for the audit log, on every backend; concurrent appenders (two
replicas on one PostgreSQL database; two audit logs on one SQLite store) keep one
linear chain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from swarmdeploy.manager.services.audit import AuditLog, audit_json
from swarmdeploy.protocol.audit import GENESIS, ChainChecker
from swarmdeploy.storage import Conflict, Storage
from swarmdeploy.storage.records import AuditRecord
from tests.storage.helpers import task


def entry(seq: int, *, details: dict[str, object] | None = None) -> AuditRecord:
    return AuditRecord(
        seq=seq,
        at=1_700_000_000_000 + seq,
        actor="key alice (0123456789ab)",
        action="terminal.command",
        target="raspi-07",
        details=details if details is not None else {"command": "ls\n\x1b[2J ünï"},
        prev_hash=GENESIS,
        hash="a" * 64,
    )


async def test_audit_entries_round_trip_in_seq_order(storage: Storage) -> None:
    assert await storage.last_audit() is None
    for seq in (1, 2, 3):
        await storage.add_audit(entry(seq, details={"n": seq, "nested": {"x": [1, "y"]}}))
    assert await storage.last_audit() == entry(3, details={"n": 3, "nested": {"x": [1, "y"]}})
    page = await storage.list_audit(page=2, per_page=2)
    assert page.total == 3 and [e.seq for e in page.items] == [3]
    first = (await storage.list_audit(page=1, per_page=10)).items[0]
    assert first == entry(1, details={"n": 1, "nested": {"x": [1, "y"]}})


async def test_audit_details_keep_control_characters_exactly(storage: Storage) -> None:
    await storage.add_audit(entry(1))
    stored = await storage.last_audit()
    assert stored is not None and stored.details == {"command": "ls\n\x1b[2J ünï"}


async def test_audit_entry_with_a_known_seq_is_refused(storage: Storage) -> None:
    await storage.add_audit(entry(1))
    with pytest.raises(Conflict):
        await storage.add_audit(entry(1))


async def test_audit_entries_outlive_a_deleted_task(storage: Storage) -> None:
    await storage.add_task(task("t1"), [])
    await storage.add_audit(entry(1))
    await storage.delete_task("t1")
    assert (await storage.list_audit(page=1, per_page=10)).total == 1


async def test_concurrent_appenders_on_one_database_keep_one_chain(
    storage_url: str, open_backend: Callable[[], Storage]
) -> None:
    replicas = [open_backend() for _ in range(2)]
    if not storage_url.startswith("postgresql"):
        # SQLite serves one manager process (replicas need PostgreSQL): two audit
        # logs (two locks) on one storage still race for the same seq
        replicas = [replicas[0], replicas[0]]
    for backend in {id(r): r for r in replicas}.values():
        await backend.open()
    try:
        logs = [AuditLog(r, clock=lambda: 1_000) for r in replicas]
        await asyncio.gather(
            *(logs[i % 2].append(f"replica {i % 2}", "test.append", str(i)) for i in range(30))
        )
        page = await replicas[0].list_audit(page=1, per_page=100)
        assert [e.seq for e in page.items] == list(range(1, 31))
        checker = ChainChecker()
        assert checker.feed(audit_json(e) for e in page.items) is None
        assert checker.checked == 30
    finally:
        for backend in {id(r): r for r in replicas}.values():
            await backend.close()
