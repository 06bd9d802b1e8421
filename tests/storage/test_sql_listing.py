"""The query paths of the REST lists at scale, on SQLite and PostgreSQL: rows counted per
task in SQL (``task_state_counts``) agree with the rows themselves, and paging a filtered
targets list (tags, search, selector) yields exactly the filtered fleet, each target once."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from swarmdeploy.protocol.selector import parse_selector
from swarmdeploy.storage import Storage
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import (
    ContactWrite,
    Location,
    StateCount,
    TargetRecord,
    TaskRecord,
    TaskTargetRecord,
    WriteBatch,
)

STATES = ["pending", "running", "exited", "failed", "stopped"]


def _tags(i: int) -> tuple[str, ...]:
    return ("fleet", f"site-{i % 3}", *(("cam",) if i % 4 == 0 else ()))


async def _fleet(storage: Storage, count: int) -> None:
    hashes = [i.to_bytes(32, "big") for i in range(count)]
    await storage.create_token_set("s", hashes, created_at=1, expires_at=10**12)
    for i, token_hash in enumerate(hashes):
        record = TargetRecord(
            id=f"dev-{i:03d}",
            curve_key=f"k{i:039d}",
            identity_key="id",
            created_at=1,
            updated_at=1,
            name=f"Device {i}" if i % 5 else f"Gateway {i}",
            tags=_tags(i),
            location=Location(45.0, 7.5) if i % 2 else None,
        )
        await storage.register_target(token_hash, record, now=1)
    health = [ContactWrite(f"dev-{i:03d}", 2, {"os": "Linux", "n": i}) for i in range(count)]
    await storage.commit_batch(WriteBatch(contacts=health))


async def _task(storage: Storage, task_id: str, rows: list[TaskTargetRecord]) -> None:
    record = TaskRecord(
        id=task_id, description="", debug=False, descriptor={}, created_at=1, expires_at=10**12,
        created_by="t", build_host=None, source_digest=None, match_ids=(), match_tags=(),
    )  # fmt: skip
    await storage.add_task(record, rows)


def _expected(rows: list[TaskTargetRecord]) -> list[StateCount]:
    groups: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for r in rows:
        groups[(r.role, r.state)].append(r.target_id)
    counts = [StateCount(role, state, len(ids), min(ids)) for (role, state), ids in groups.items()]
    return sorted(counts, key=lambda c: (c.role, c.first_target))


async def test_state_counts_agree_with_the_rows(sql_storage: Storage) -> None:
    await _fleet(sql_storage, 40)
    ids = [f"dev-{i:03d}" for i in range(40)]
    tasks = {
        "big": [TaskTargetRecord("big", t, STATES[i % 5], 3) for i, t in enumerate(ids)],
        "built": [TaskTargetRecord("built", ids[39], "building", 3, role="build")]
        + [TaskTargetRecord("built", t, STATES[(i * 7) % 5], 3) for i, t in enumerate(ids[:9])],
        "one": [TaskTargetRecord("one", ids[5], "exited", 3)],
        "empty": [],
    }
    for task_id, rows in tasks.items():
        await _task(sql_storage, task_id, rows)
    sql_storage.in_chunk = 2  # type: ignore[attr-defined]  # several IN lists for 4 ids

    found = await sql_storage.task_state_counts([*tasks, "unknown"])

    assert set(found) == {"big", "built", "one"}  # no rows, no entry
    for task_id in ("big", "built", "one"):
        rows = await sql_storage.task_targets(task_id)
        assert rows and found[task_id] == _expected(rows)
    assert found["built"][0] == StateCount("build", "building", 1, "dev-039")
    assert sum(c.count for c in found["big"]) == 40
    assert await sql_storage.task_state_counts([]) == {}


@pytest.mark.parametrize(
    ("tags", "search", "select"),
    [
        ((), None, ""),
        (("fleet",), None, ""),
        (("site-1", "cam"), None, ""),
        ((), "gateway", ""),
        (("site-2",), "dev-0", ""),
        ((), None, "cam,+site-0"),
        ((), None, "fleet,!cam"),
        (("nothing-has-this",), None, ""),
    ],
)
async def test_filtered_pages_together_are_the_filtered_fleet(
    sql_storage: Storage, tags: tuple[str, ...], search: str | None, select: str
) -> None:
    await _fleet(sql_storage, 37)
    everyone = (await sql_storage.list_targets(per_page=1000)).items
    selector = parse_selector(select, "select")
    wanted = [
        t.id
        for t in everyone
        if set(tags) <= set(t.tags)
        and (search is None or search in t.id.lower() or search in t.name.lower())
        and (selector.empty or _selects(select, set(t.tags)))
    ]
    for per_page in (1, 5, 36, 1000):
        seen: list[str] = []
        page, total = 1, None
        while True:
            result = await sql_storage.list_targets(
                tags=tags, search=search, selector=selector, page=page, per_page=per_page
            )
            total = result.total if total is None else total
            assert result.total == total == len(wanted)
            seen.extend(t.id for t in result.items)
            if not result.items:
                break
            page += 1
        assert seen == wanted, per_page
    got = {t.id: t for t in everyone}
    assert got["dev-001"].location == Location(45.0, 7.5) and got["dev-000"].location is None
    assert set(got["dev-004"].tags) == {"fleet", "site-1", "cam"}
    assert got["dev-004"].health == {"os": "Linux", "n": 4}


def _selects(select: str, tags: set[str]) -> bool:
    """The two selector forms used above, evaluated by hand (docs/selectors.md)."""
    if select == "cam,+site-0":
        return "cam" in tags and "site-0" in tags
    assert select == "fleet,!cam"
    return "fleet" in tags and "cam" not in tags


async def test_json_columns_msgspec_refuses_still_read(tmp_path: Path) -> None:
    """``json.dumps`` writes ``NaN``, which msgspec refuses: such a stored health document
    still reads (``decode_json`` falls back to ``json.loads``); big integers stay exact."""
    backend = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'nan.db'}")
    await backend.open()
    try:
        await _fleet(backend, 2)
        odd = {"load_1m": float("nan"), "big": 2**70, "text": "ü\u202e"}
        await backend.touch_target("dev-000", seen_at=3, health=odd)
        got = (await backend.get_target("dev-000")).health  # type: ignore[union-attr]
        assert got is not None and got["load_1m"] != got["load_1m"]  # NaN
        assert got["big"] == 2**70 and got["text"] == "ü\u202e"
        assert (await backend.get_target("dev-001")).health == {"os": "Linux", "n": 1}  # type: ignore[union-attr]
    finally:
        await backend.close()
