"""Group commit (manager/services/group_commit.py): many writers share one transaction, each
learns the outcome of its own write only after the commit, and a failing batch is retried
item by item so that one bad write does not lose the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from swarmdeploy.manager.services.group_commit import GroupCommit
from swarmdeploy.storage.errors import StorageError, StorageUnavailable
from swarmdeploy.storage.records import (
    BatchResult,
    ContactWrite,
    LogRecord,
    StateWrite,
    TaskRecord,
    TaskTargetRecord,
    WriteBatch,
)
from swarmdeploy.storage.sqlite import ScratchSqliteStorage


class RecordingStorage(ScratchSqliteStorage):
    """Counts transactions; ``poison`` makes every batch holding that target's write fail;
    ``down`` makes every batch fail; ``lose_answer`` commits a batch, then fails (the
    connection dropped after the commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[WriteBatch] = []
        self.poison: str | None = None
        self.down = False
        self.lose_answer = False

    async def commit_batch(self, batch: WriteBatch) -> BatchResult:
        self.batches.append(batch)
        await asyncio.sleep(0)  # a real transaction lets other coroutines run
        if self.down:
            raise StorageUnavailable("database unavailable: test")
        if self.poison is not None and any(s.target_id == self.poison for s in batch.states):
            raise StorageError("database error: poisoned")
        result = await super().commit_batch(batch)
        if self.lose_answer:
            raise StorageUnavailable("database unavailable: connection lost after commit")
        return result


TARGETS = [f"t{i}" for i in range(20)]


@pytest.fixture
async def storage() -> AsyncIterator[RecordingStorage]:
    s = RecordingStorage()
    await s.open()
    task = TaskRecord(id="k", description="", debug=False, descriptor={}, created_at=0,
                      expires_at=10**15)  # fmt: skip
    await s.add_task(task, [TaskTargetRecord("k", t, "pending", 0) for t in TARGETS])
    yield s
    await s.close()


def announce(target_id: str) -> StateWrite:
    return StateWrite("k", target_id, "announced", 5, expected=("pending",))


async def states(storage: RecordingStorage) -> dict[str, str]:
    return {r.target_id: r.state for r in await storage.task_targets("k")}


async def test_concurrent_writers_share_one_transaction(storage: RecordingStorage) -> None:
    commits = GroupCommit(storage, window_s=0.01, max_items=100)
    line = LogRecord(time=1, target="t0", task="k", stage="s", command="c", output="o", seq=1)
    results = await asyncio.gather(
        *(commits.set_state(announce(t)) for t in TARGETS),
        commits.add_logs([line]),
        commits.touch(ContactWrite("t0", 9)),
    )
    assert results == [True] * len(TARGETS) + [1, None]
    assert len(storage.batches) == 1 and commits.batches == 1
    assert commits.items == len(TARGETS) + 2
    assert set((await states(storage)).values()) == {"announced"}


async def test_a_full_queue_is_committed_without_waiting_for_the_window(
    storage: RecordingStorage,
) -> None:
    commits = GroupCommit(storage, window_s=60.0, max_items=5)
    async with asyncio.timeout(10):
        done = await asyncio.gather(*(commits.set_state(announce(t)) for t in TARGETS))
    assert all(done)
    assert [len(b.states) for b in storage.batches] == [5, 5, 5, 5]


async def test_each_writer_gets_its_own_compare_and_set_outcome(
    storage: RecordingStorage,
) -> None:
    commits = GroupCommit(storage, window_s=0.01)
    first, again = await asyncio.gather(
        commits.set_state(announce("t1")), commits.set_state(announce("t1"))
    )
    assert (first, again) == (True, False)  # the second found "announced", not "pending"


async def test_a_failing_batch_is_retried_item_by_item(storage: RecordingStorage) -> None:
    storage.poison = "t3"
    commits = GroupCommit(storage, window_s=0.01)
    outcomes = await asyncio.gather(
        *(commits.set_state(announce(t)) for t in TARGETS), return_exceptions=True
    )
    failed = [t for t, o in zip(TARGETS, outcomes, strict=True) if isinstance(o, Exception)]
    assert failed == ["t3"]
    assert isinstance(outcomes[3], StorageError)
    assert commits.retried == 1
    stored = await states(storage)
    assert stored.pop("t3") == "pending"
    assert set(stored.values()) == {"announced"}


async def test_an_unavailable_database_fails_every_writer(storage: RecordingStorage) -> None:
    storage.down = True
    commits = GroupCommit(storage, window_s=0.01)
    outcomes = await asyncio.gather(
        *(commits.set_state(announce(t)) for t in TARGETS[:4]), return_exceptions=True
    )
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert set((await states(storage)).values()) == {"pending"}
    storage.down = False  # the agents send again: stored now
    assert await commits.set_state(announce("t0"))


async def test_a_commit_whose_answer_was_lost_is_not_stored_twice(
    storage: RecordingStorage,
) -> None:
    """Committed, then the connection dropped: the writer sees an error (no ack), the agent
    sends again and the repeat changes nothing (compare-and-set, unique log seq)."""
    commits = GroupCommit(storage, window_s=0.0)
    line = LogRecord(time=1, target="t0", task="k", stage="s", command="c", output="o", seq=1)
    storage.lose_answer = True
    with pytest.raises(StorageUnavailable):
        await commits.set_state(announce("t0"))
    with pytest.raises(StorageUnavailable):
        await commits.add_logs([line])
    storage.lose_answer = False
    assert not await commits.set_state(announce("t0"))  # already announced
    assert await commits.add_logs([line]) == 0  # already stored
    assert (await states(storage))["t0"] == "announced"


async def test_bad_settings_are_refused(storage: RecordingStorage) -> None:
    with pytest.raises(ValueError, match="max_items"):
        GroupCommit(storage, max_items=0)
    with pytest.raises(ValueError, match="window_s"):
        GroupCommit(storage, window_s=-1)


async def test_drain_waits_for_the_writes_in_flight(storage: RecordingStorage) -> None:
    commits = GroupCommit(storage, window_s=0.05)
    writers = [asyncio.create_task(commits.set_state(announce(t))) for t in TARGETS[:3]]
    await asyncio.sleep(0)
    await commits.drain()
    assert all(w.done() for w in writers)
    assert [w.result() for w in writers] == [True, True, True]
    await commits.drain()  # nothing queued: returns at once


async def test_a_cancelled_writer_does_not_take_its_write_or_the_others_out(
    storage: RecordingStorage,
) -> None:
    commits = GroupCommit(storage, window_s=0.05, max_items=100)
    cancelled = asyncio.create_task(commits.set_state(announce("t0")))
    others = [asyncio.create_task(commits.set_state(announce(t))) for t in TARGETS[1:3]]
    await asyncio.sleep(0)  # every write is queued
    cancelled.cancel()
    assert await asyncio.gather(*others) == [True, True]
    assert cancelled.cancelled()
    await commits.drain()
    assert len(storage.batches) == 1  # the cancelled caller's write was stored with them
    assert (await states(storage))["t0"] == "announced"
