"""The storage contract for log lines: ingest, de-duplication, queries, full text, retention."""

from __future__ import annotations

import dataclasses

import pytest

from swarmdeploy.storage import Storage
from swarmdeploy.storage.records import MAX_PER_PAGE, LogQuery, LogSortField

from .helpers import line


async def _outputs(storage: Storage, **filters: object) -> list[str]:
    page = await storage.query_logs(LogQuery(per_page=MAX_PER_PAGE, **filters))  # type: ignore[arg-type]
    return [log.output for log in page.items]


async def test_add_logs_skips_known_target_seq_and_counts_stored(storage: Storage) -> None:
    first = [
        line("a", seq=1),
        line("b", seq=2),
        line("a-again", seq=1),
        line("c", target_id="t2", seq=1),
    ]
    assert await storage.add_logs(first) == 3
    again = [line("b-resent", seq=2), line("d", seq=3), line("m1"), line("m1")]
    assert await storage.add_logs(again) == 3  # seq None never conflicts
    assert await storage.count_logs() == 6
    assert sorted(await _outputs(storage)) == ["a", "b", "c", "d", "m1", "m1"]
    assert await storage.add_logs([]) == 0


async def test_add_logs_over_several_chunks_stores_all_with_ids(storage: Storage) -> None:
    batch = [line(f"line {i}", time=i, seq=i) for i in range(2500)]
    assert await storage.add_logs(batch) == 2500
    assert await storage.add_logs(batch[1000:2600]) == 0
    page = await storage.query_logs(LogQuery(page=3, per_page=1000))
    assert (page.total, len(page.items)) == (2500, 500)
    assert page.items[0].output == "line 2000"
    ids = [log.id for log in page.items]
    assert all(i is not None for i in ids) and len(set(ids)) == 500


async def test_query_logs_returns_whole_records(storage: Storage) -> None:
    stored = line(
        "x", time=7, target_id="t9", task_id="k9", stage="run", command="./a", error=True, seq=4
    )
    await storage.add_logs([stored])
    (got,) = (await storage.query_logs(LogQuery())).items
    assert got.id is not None
    assert dataclasses.replace(got, id=None) == stored


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"target": "t2"}, ["b"]),
        ({"task": "k2"}, ["c"]),
        ({"stage": "run"}, ["d"]),
        ({"command": "$agent"}, ["e"]),
        ({"error": True}, ["b", "e"]),
        ({"error": False}, ["a", "c", "d"]),
        ({"target": "t1", "error": True}, ["e"]),
        ({"target": "t1", "task": "k1", "stage": "install"}, ["a", "e"]),
    ],
)
async def test_query_logs_filters_are_anded(
    storage: Storage, filters: dict[str, object], expected: list[str]
) -> None:
    await storage.add_logs(
        [
            line("a", time=1),
            line("b", time=2, target_id="t2", error=True),
            line("c", time=3, task_id="k2"),
            line("d", time=4, stage="run"),
            line("e", time=5, command="$agent", error=True),
        ]
    )
    assert await _outputs(storage, **filters) == expected


async def test_query_logs_time_range_includes_since_excludes_until(storage: Storage) -> None:
    await storage.add_logs([line(str(t), time=t) for t in (10, 20, 30, 40)])
    assert await _outputs(storage, since=20, until=40) == ["20", "30"]
    assert await _outputs(storage, since=41) == []
    assert await _outputs(storage, until=11) == ["10"]


async def test_query_logs_terminal_stages_limit_only_terminal_lines(storage: Storage) -> None:
    await storage.add_logs(
        [
            line("task line", time=1),
            line("alice", time=2, task_id="terminal", stage="terminal:a"),
            line("bob", time=3, task_id="terminal", stage="terminal:b"),
        ]
    )
    assert await _outputs(storage) == ["task line", "alice", "bob"]
    assert await _outputs(storage, terminal_stages=("terminal:a",)) == ["task line", "alice"]
    assert await _outputs(storage, terminal_stages=()) == ["task line"]
    assert await _outputs(storage, task="terminal", terminal_stages=()) == []


async def test_query_logs_full_text_needs_every_word_case_insensitively(storage: Storage) -> None:
    await storage.add_logs(
        [
            line("Connection refused by 10.0.0.7:5556"),
            line("ERROR: disk /dev/sda1 is FULL"),
            line("error_code=17 while installing python3-zmq"),
            line("disk usage ok"),
        ]
    )
    assert await _outputs(storage, output="error disk") == ["ERROR: disk /dev/sda1 is FULL"]
    assert await _outputs(storage, output="DISK") == [
        "ERROR: disk /dev/sda1 is FULL",
        "disk usage ok",
    ]
    assert await _outputs(storage, output="dev sda1") == ["ERROR: disk /dev/sda1 is FULL"]
    assert await _outputs(storage, output="code 17 zmq") == [
        "error_code=17 while installing python3-zmq"
    ]
    assert await _outputs(storage, output="refused 5556") == ["Connection refused by 10.0.0.7:5556"]
    assert await _outputs(storage, output="error usage") == []
    assert await _outputs(storage, output="refuse") == []  # whole words, no stemming


async def test_query_logs_full_text_ignores_query_syntax(storage: Storage) -> None:
    await storage.add_logs([line("alpha beta"), line("alpha or gamma"), line("not delta")])
    assert await _outputs(storage, output='alpha OR "gamma') == ["alpha or gamma"]
    assert await _outputs(storage, output="not* delta)") == ["not delta"]
    assert await _outputs(storage, output="-beta alpha") == ["alpha beta"]


async def test_query_logs_full_text_combines_with_filters(storage: Storage) -> None:
    await storage.add_logs(
        [line("build failed", target_id="t1", time=1), line("build failed", target_id="t2", time=2)]
    )
    page = await storage.query_logs(LogQuery(output="failed build", target="t2"))
    assert (page.total, [log.target for log in page.items]) == (1, ["t2"])


@pytest.mark.parametrize("field", ["time", "target", "task", "stage", "command", "error"])
async def test_query_logs_sorts_by_each_field_then_id(
    storage: Storage, field: LogSortField
) -> None:
    logs = [
        line("0", time=3, target_id="b", task_id="k2", stage="run", command="z", error=True),
        line("1", time=1, target_id="a", task_id="k3", stage="install", command="y"),
        line("2", time=2, target_id="c", task_id="k1", stage="build", command="x", error=True),
        line("3", time=1, target_id="a", task_id="k1", stage="build", command="x"),
    ]
    await storage.add_logs(logs)
    key = {x.output: (getattr(x, field), int(x.output)) for x in logs}
    ascending = await _outputs(storage, sort_by=field)
    assert ascending == sorted(key, key=key.__getitem__)
    descending = await _outputs(storage, sort_by=field, sort_order="desc")
    assert descending == sorted(key, key=key.__getitem__, reverse=True)


async def test_query_logs_paging_bounds(storage: Storage) -> None:
    await storage.add_logs([line(str(i), time=i) for i in range(5)])
    page = await storage.query_logs(LogQuery(page=2, per_page=2, sort_order="desc"))
    assert (page.total, page.page, page.per_page) == (5, 2, 2)
    assert [log.output for log in page.items] == ["2", "1"]
    assert list((await storage.query_logs(LogQuery(page=9, per_page=2))).items) == []
    for bad in (LogQuery(page=0), LogQuery(per_page=0), LogQuery(per_page=MAX_PER_PAGE + 1)):
        with pytest.raises(ValueError, match="page"):
            await storage.query_logs(bad)


async def test_purge_logs_by_age_deletes_older_lines(storage: Storage) -> None:
    await storage.add_logs([line(f"w{t}", time=t, seq=t) for t in (10, 20, 30)])
    assert await storage.purge_logs(older_than=20) == 1
    assert await _outputs(storage) == ["w20", "w30"]
    assert await _outputs(storage, output="w10") == []
    # The purged line's (target, seq) is free again.
    assert await storage.add_logs([line("w10", time=10, seq=10)]) == 1


async def test_purge_logs_keep_rows_keeps_newest(storage: Storage) -> None:
    await storage.add_logs([line(f"r{i}", time=t) for i, t in enumerate([5, 1, 5, 3, 9])])
    assert await storage.purge_logs(keep_rows=3) == 2
    assert await _outputs(storage) == ["r0", "r2", "r4"]
    assert await storage.purge_logs(keep_rows=3) == 0
    assert await storage.purge_logs(keep_rows=0) == 3
    assert await storage.count_logs() == 0


async def test_purge_logs_by_age_and_rows_counts_both(storage: Storage) -> None:
    await storage.add_logs([line(str(t), time=t) for t in range(10)])
    assert await storage.purge_logs(older_than=3, keep_rows=4) == 6
    assert await _outputs(storage) == ["6", "7", "8", "9"]
    assert await storage.purge_logs() == 0
    with pytest.raises(ValueError, match="keep_rows"):
        await storage.purge_logs(keep_rows=-1)


async def test_deleted_lines_leave_the_full_text_index(storage: Storage) -> None:
    await storage.add_logs([line("needle old", time=1), line("needle new", time=2)])
    await storage.purge_logs(keep_rows=1)
    page = await storage.query_logs(LogQuery(output="needle"))
    assert (page.total, [log.output for log in page.items]) == (1, ["needle new"])


async def test_purge_logs_beyond_one_batch_deletes_all_asked(storage: Storage) -> None:
    await storage.add_logs([line(f"b{i}", time=i, seq=i) for i in range(12_000)])
    assert await storage.purge_logs(keep_rows=1_000) == 11_000
    assert await storage.count_logs() == 1_000
    oldest = await storage.query_logs(LogQuery(per_page=1))
    assert oldest.items[0].output == "b11000"


async def test_long_fields_are_stored_and_first_100k_chars_searchable(storage: Storage) -> None:
    words = [f"w{i}" for i in range(30_000)]  # 188,890 characters of distinct words
    output = " ".join(words)
    stage, command = "s" * 64, "c" * 16_384
    assert await storage.add_logs([line(output, stage=stage, command=command, seq=1)]) == 1
    (got,) = (await storage.query_logs(LogQuery(output="w0 w15000"))).items
    assert (got.output, got.stage, got.command) == (output, stage, command)
    assert (await storage.query_logs(LogQuery(output="w29999"))).total == 0
