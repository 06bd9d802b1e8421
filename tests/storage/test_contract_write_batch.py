"""The storage contract for group commit (``Storage.commit_batch``), on every backend."""

from __future__ import annotations

from swarmdeploy.storage import Storage
from swarmdeploy.storage.records import (
    ContactWrite,
    HealthSample,
    LogQuery,
    StateWrite,
    WriteBatch,
)

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


def _sample(target_id: str, at_ms: int) -> HealthSample:
    return HealthSample(
        target_id, at_ms, cpu_percent=2.0, load_1m=0.5, mem_total_bytes=4 << 30,
        mem_available_bytes=1 << 30, disk_total_bytes=32 << 30, disk_free_bytes=8 << 30,
        agent_rss_bytes=25 << 20,
    )  # fmt: skip


async def test_commit_batch_keeps_each_targets_newest_contact_and_its_samples(
    storage: Storage,
) -> None:
    await add_target(storage, target("a"))
    await add_target(storage, target("b"))
    batch = WriteBatch(
        contacts=[
            ContactWrite("a", 50, {"cpu": 1}, _sample("a", 50)),
            ContactWrite("a", 60),  # newer time, no document: the document of 50 stays
            ContactWrite("b", 40),
            ContactWrite("b", 30),  # an older time does not move the contact back
            ContactWrite("ghost", 70, {"cpu": 3}, _sample("ghost", 70)),  # ignored
            ContactWrite("b", 45, {"cpu": 2}, _sample("b", 45)),
        ]
    )
    await storage.commit_batch(batch)
    a, b = await storage.get_target("a"), await storage.get_target("b")
    assert a is not None and (a.last_seen_at, a.health) == (60, {"cpu": 1})
    assert b is not None and (b.last_seen_at, b.health) == (45, {"cpu": 2})
    assert [s.at_ms for s in await storage.health_samples("a", since=0, limit=10)] == [50]
    assert [s.at_ms for s in await storage.health_samples("b", since=0, limit=10)] == [45]
    # a repeated sample (same target and millisecond) is stored once
    await storage.commit_batch(WriteBatch(contacts=[ContactWrite("a", 61, None, _sample("a", 50))]))
    assert len(await storage.health_samples("a", since=0, limit=10)) == 1


async def test_commit_batch_counts_log_lines_per_group_with_and_without_seq(
    storage: Storage,
) -> None:
    await add_target(storage, target("a"))
    await storage.add_task(task("k1"), [row("k1", "a")])
    await storage.commit_batch(WriteBatch(logs=[[line("old", target_id="a", seq=1)]]))
    result = await storage.commit_batch(
        WriteBatch(
            logs=[
                [line("old again", target_id="a", seq=1), line("new", target_id="a", seq=2)],
                [line("new again", target_id="a", seq=2), line("3", target_id="a", seq=3)],
            ]
        )
    )
    assert result.logs == [1, 1]
    result = await storage.commit_batch(
        WriteBatch(logs=[[line("no seq", target_id="a")], [line("4", target_id="a", seq=4)]])
    )
    assert result.logs == [1, 1]
    stored = await storage.query_logs(LogQuery(per_page=10))
    assert sorted(x.output for x in stored.items) == ["3", "4", "new", "no seq", "old"]


async def test_commit_batch_sets_many_rows_in_one_statement_with_compare_and_set(
    storage: Storage,
) -> None:
    ids = [f"t{i}" for i in range(7)]
    for target_id in ids:
        await add_target(storage, target(target_id))
    await storage.add_task(task("k1"), [row("k1", t) for t in ids])
    await storage.commit_batch(
        WriteBatch(states=[StateWrite("k1", "t0", "announced", 2, expected=("pending",))])
    )
    writes = [StateWrite("k1", t, "announced", 3, "r", expected=("pending",)) for t in ids]
    writes.append(StateWrite("k1", "ghost", "announced", 3, expected=("pending",)))
    result = await storage.commit_batch(WriteBatch(states=writes))
    # t0 was announced already: its compare-and-set misses, as does the unknown row
    assert result.states == [False] + [True] * 6 + [False]
    rows = {r.target_id: (r.state, r.updated_at) for r in await storage.task_targets("k1")}
    assert rows["t0"] == ("announced", 2)
    assert all(rows[t] == ("announced", 3) for t in ids[1:])
