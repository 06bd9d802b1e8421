"""The storage contract for group commit (``Storage.commit_batch``), on every backend."""

from __future__ import annotations

from swarmdeploy.storage import Storage
from swarmdeploy.storage.records import ContactWrite, LogQuery, StateWrite, WriteBatch

from .helpers import add_target, line, row, target, task


async def test_commit_batch_applies_states_logs_and_contacts_in_one_call(
    storage: Storage,
) -> None:
    await add_target(storage, target("a"))
    await add_target(storage, target("b"))
    await storage.add_task(task("k1"), [row("k1", "a"), row("k1", "b")])
    batch = WriteBatch(
        states=[
            StateWrite("k1", "a", "announced", 5, expected=("pending",)),
            StateWrite("k1", "b", "accepted", 5, expected=("announced",)),  # CAS misses
            StateWrite("k1", "a", "accepted", 6, "ok", expected=("announced",)),  # in order
            StateWrite("k1", "ghost", "accepted", 6),
        ],
        logs=[
            [line("one", target_id="a", seq=1), line("two", target_id="a", seq=2)],
            [line("one", target_id="a", seq=1), line("x", target_id="b", seq=1)],
        ],
        contacts=[ContactWrite("a", 77, {"cpu": 1}), ContactWrite("ghost", 78)],
    )
    result = await storage.commit_batch(batch)
    assert result.states == [True, False, True, False]
    assert result.logs == [2, 1]  # the repeated (a, 1) is stored once
    rows = {
        r.target_id: (r.state, r.updated_at, r.reason) for r in await storage.task_targets("k1")
    }
    assert rows == {"a": ("accepted", 6, "ok"), "b": ("pending", 1000, "")}
    stored = await storage.query_logs(LogQuery(per_page=10))
    assert sorted((x.target, x.seq) for x in stored.items) == [("a", 1), ("a", 2), ("b", 1)]
    a = await storage.get_target("a")
    assert a is not None and a.last_seen_at == 77 and a.health == {"cpu": 1}


async def test_commit_batch_of_nothing_changes_nothing(storage: Storage) -> None:
    result = await storage.commit_batch(WriteBatch())
    assert (result.states, result.logs) == ([], [])
