"""The storage contract for the agent link's state, on every backend: requests to agents,
upload progress, the highest log ``seq``, single rows and aggregate counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from swarmdeploy.storage import Conflict, NotFound, Storage
from swarmdeploy.storage.records import RequestRecord, UploadRecord

from .helpers import add_target, line, row, target, task


def request(
    request_id: str,
    *,
    target_id: str = "t1",
    kind: str = "stop",
    created_at: int = 100,
    expires_at: int | None = None,
) -> RequestRecord:
    """A pending request with a small payload."""
    return RequestRecord(
        id=request_id,
        target_id=target_id,
        kind=kind,
        payload={"task_id": "k1", "n": [1]},
        created_at=created_at,
        expires_at=expires_at,
    )


def upload(sha: str = "a" * 64, *, name: str = "out.tar.gz", size: int = 10) -> UploadRecord:
    """A new upload record of task k1 in chunks of 4 bytes."""
    return UploadRecord(
        task_id="k1", sha256=sha, name=name, size_bytes=size, chunk_bytes=4, created_at=7
    )


# -- requests ----------------------------------------------------------------------------------


async def test_request_round_trips_and_lists_open_in_storing_order(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await add_target(storage, target("t2"))
    full = RequestRecord("r9", "t1", "terminal", {"command": "ls"}, 5, expires_at=65)
    assert await storage.add_request(full)
    assert await storage.add_request(request("r1", created_at=1))  # older time, stored later
    assert await storage.add_request(request("r1", target_id="t2"))  # ids are per target
    assert await storage.get_request("t1", "r9") == full
    assert [r.id for r in await storage.open_requests("t1")] == ["r9", "r1"]
    got = await storage.get_request("t1", "r1")
    assert got is not None
    got.payload["n"].append(2)  # returned values are fresh copies
    assert await storage.get_request("t1", "r1") == request("r1", created_at=1)
    assert await storage.get_request("t1", "nope") is None


async def test_request_for_unknown_target_or_taken_id_is_refused(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.add_request(request("r1", target_id="ghost"))
    await add_target(storage, target("t1"))
    await storage.add_request(request("r1"))
    with pytest.raises(Conflict):
        await storage.add_request(request("r1", kind="log_request"))
    assert [r.kind for r in await storage.open_requests("t1")] == ["stop"]


async def test_bound_counts_open_requests_only(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    assert await storage.add_request(request("r1"), max_open=2)
    assert await storage.add_request(request("r2"), max_open=2)
    assert not await storage.add_request(request("r3"), max_open=2)
    assert await storage.get_request("t1", "r3") is None
    await storage.finish_request("t1", "r1", state="acked", at=5)
    assert await storage.add_request(request("r3"), max_open=2)


async def test_bound_can_count_some_kinds_only(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await storage.add_request(request("c1", kind="config"))
    assert await storage.add_request(request("r1"), max_open=1, counted_kinds=["stop"])
    assert not await storage.add_request(request("r2"), max_open=1, counted_kinds=["stop"])
    assert not await storage.add_request(request("r2", kind="log_request"), max_open=2)
    assert await storage.add_request(request("r2", kind="log_request"), max_open=3)


async def test_concurrent_adds_never_exceed_the_bound(
    storage_url: str, open_backend: Callable[[], Storage]
) -> None:
    # PostgreSQL: two storage objects stand for two replicas. SQLite serves one manager
    # process: concurrent calls on one object.
    backends = [open_backend()]
    backends.append(open_backend() if storage_url.startswith("postgres") else backends[0])
    for backend in backends:
        await backend.open()
    try:
        await add_target(backends[0], target("t1"))
        results = await asyncio.gather(
            *(backends[i % 2].add_request(request(f"r{i}"), max_open=3) for i in range(8))
        )
        assert sum(results) == 3
        assert len(await backends[1].open_requests("t1")) == 3
    finally:
        for backend in backends:
            await backend.close()


async def test_supersede_replaces_open_requests_of_the_kind(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await storage.add_request(request("c1", kind="config"))
    await storage.add_request(request("s1"))
    await storage.add_request(request("c2", kind="config"), supersede=True)
    assert [r.id for r in await storage.open_requests("t1")] == ["s1", "c2"]
    await storage.finish_request("t1", "c2", state="acked", at=9)
    # the same id again (same configuration pushed once more): stored afresh, open
    await storage.add_request(request("c2", kind="config"), supersede=True)
    again = await storage.get_request("t1", "c2")
    assert again is not None and (again.state, again.acked_at) == ("pending", None)


async def test_sent_then_acked_once_and_refused_keeps_message(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    for request_id in ("r1", "r2", "r3"):
        await storage.add_request(request(request_id))
    assert await storage.mark_requests_sent("t1", ["r1", "r2", "zz"]) == 2
    assert await storage.mark_requests_sent("t1", ["r1"]) == 0  # sent already
    assert [r.state for r in await storage.open_requests("t1")] == ["sent", "sent", "pending"]
    acked = await storage.finish_request("t1", "r1", state="acked", at=50, message="ok")
    assert acked is not None and (acked.state, acked.acked_at, acked.kind) == ("acked", 50, "stop")
    assert await storage.finish_request("t1", "r1", state="acked", at=51) is None
    refused = await storage.finish_request("t1", "r3", state="refused", at=52, message="busy")
    assert refused is not None and refused.message == "busy"
    assert await storage.finish_request("t1", "nope", state="acked", at=53) is None
    assert [r.id for r in await storage.open_requests("t1")] == ["r2"]
    with pytest.raises(ValueError):
        await storage.finish_request("t1", "r2", state="sent", at=54)


async def test_expiry_finds_due_targets_and_expires_open_only(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await add_target(storage, target("t2"))
    await storage.add_request(request("a", expires_at=100))
    await storage.add_request(request("b", expires_at=200))
    await storage.add_request(request("c"))  # never expires
    await storage.add_request(request("d", target_id="t2", expires_at=100))
    await storage.finish_request("t2", "d", state="acked", at=1)
    assert await storage.targets_with_expired_requests(now=99) == []
    assert await storage.targets_with_expired_requests(now=100) == ["t1"]
    assert await storage.expire_requests("t1", now=99) == []
    expired = await storage.expire_requests("t1", now=250)
    assert [(r.id, r.state, r.acked_at) for r in expired] == [
        ("a", "expired", 250),
        ("b", "expired", 250),
    ]
    assert [r.id for r in await storage.open_requests("t1")] == ["c"]
    assert await storage.targets_with_expired_requests(now=10**9) == []


async def test_purge_deletes_old_finished_requests_only(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    for request_id in ("old", "new", "open"):
        await storage.add_request(request(request_id))
    await storage.finish_request("t1", "old", state="acked", at=10)
    await storage.finish_request("t1", "new", state="refused", at=30)
    assert await storage.purge_requests(older_than=20) == 1
    assert await storage.get_request("t1", "old") is None
    assert await storage.get_request("t1", "new") is not None
    assert await storage.purge_requests(older_than=10**12) == 1
    assert [r.id for r in await storage.open_requests("t1")] == ["open"]


async def test_deleting_a_target_deletes_its_requests(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await add_target(storage, target("t2"))
    await storage.add_request(request("r1"))
    await storage.add_request(request("r1", target_id="t2"))
    await storage.delete_target("t1")
    await add_target(storage, target("t1"), now=2000)  # the id registered again
    assert await storage.open_requests("t1") == []
    assert await storage.delete_requests("t2") == 1
    assert await storage.open_requests("t2") == []


# -- uploads -----------------------------------------------------------------------------------


async def test_upload_progress_advances_by_compare_and_set(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.start_upload(upload())
    assert await storage.get_upload("k1", "a" * 64) == upload()
    assert await storage.advance_upload("k1", "a" * 64, expected_next=0, next_index=1)
    assert not await storage.advance_upload("k1", "a" * 64, expected_next=0, next_index=1)
    assert await storage.advance_upload(
        "k1", "a" * 64, expected_next=1, next_index=3, complete=True
    )
    done = await storage.get_upload("k1", "a" * 64)
    assert done is not None and (done.next_index, done.complete, done.chunk_count) == (3, True, 3)
    # a complete upload never moves again
    assert not await storage.advance_upload("k1", "a" * 64, expected_next=3, next_index=0)
    assert not await storage.advance_upload("k1", "b" * 64, expected_next=0, next_index=1)


async def test_start_upload_replaces_and_needs_the_task(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.start_upload(upload())
    await storage.add_task(task("k1"), [])
    await storage.start_upload(upload())
    await storage.advance_upload("k1", "a" * 64, expected_next=0, next_index=2)
    await storage.start_upload(upload(size=20))
    fresh = await storage.get_upload("k1", "a" * 64)
    assert fresh is not None and (fresh.next_index, fresh.size_bytes) == (0, 20)


async def test_uploads_listed_by_name_and_deleted_with_their_task(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.start_upload(upload("b" * 64, name="z.tgz"))
    await storage.start_upload(upload("c" * 64, name="a.tgz"))
    assert [u.name for u in await storage.list_uploads("k1")] == ["a.tgz", "z.tgz"]
    assert await storage.delete_upload("k1", "c" * 64)
    assert not await storage.delete_upload("k1", "c" * 64)
    await storage.delete_task("k1")
    await storage.add_task(task("k1"), [])  # the id reused: nothing left over
    assert await storage.list_uploads("k1") == []
    assert await storage.get_upload("k1", "b" * 64) is None


# -- logs, rows and counts ---------------------------------------------------------------------


async def test_max_log_seq_per_target_ignores_manager_lines(storage: Storage) -> None:
    assert await storage.max_log_seq("t1") == 0
    await storage.add_logs(
        [
            line("a", target_id="t1", seq=3, time=900),
            line("b", target_id="t1", seq=7, time=100),  # higher seq, older time
            line("c", target_id="t2", seq=50),
            line("m", target_id="t1", seq=None, time=5000),
        ]
    )
    assert await storage.max_log_seq("t1") == 7
    assert await storage.max_log_seq("t2") == 50
    assert await storage.max_log_seq("t3") == 0


async def test_get_task_target_reads_one_row(storage: Storage) -> None:
    await storage.add_task(task("k1"), [row("k1", "b", role="build"), row("k1", "a", "running")])
    got = await storage.get_task_target("k1", "a")
    assert got is not None and (got.state, got.role) == ("running", "deploy")
    assert await storage.get_task_target("k1", "zz") is None
    assert await storage.get_task_target("nope", "a") is None


async def test_counts_of_targets_rows_and_task_state_sets(storage: Storage) -> None:
    assert await storage.count_targets() == 0
    assert await storage.count_task_targets_by_state() == {}
    assert await storage.count_tasks_by_states() == {}
    await add_target(storage, target("t1"))
    await add_target(storage, target("t2"))
    await storage.add_task(task("k1"), [row("k1", "a", "running"), row("k1", "b", "failed")])
    await storage.add_task(task("k2"), [row("k2", "a", "failed"), row("k2", "b", "running")])
    await storage.add_task(task("k3"), [row("k3", "a", "running"), row("k3", "b", "running")])
    await storage.add_task(task("k4"), [])
    assert await storage.count_targets() == 2
    assert await storage.count_task_targets_by_state() == {"running": 4, "failed": 2}
    assert await storage.count_tasks_by_states() == {
        frozenset({"running", "failed"}): 2,
        frozenset({"running"}): 1,
        frozenset(): 1,
    }


async def test_updated_at_only_grows_when_the_clock_goes_back(storage: Storage) -> None:
    await add_target(storage, target("t1"))  # updated_at 1000
    assert (await storage.update_target("t1", name="a", updated_at=5000)).updated_at == 5000
    back = await storage.update_target("t1", name="b", updated_at=4000)
    assert back.updated_at == 5001
    stored = await storage.get_target("t1")
    assert stored is not None and stored.updated_at == 5001
