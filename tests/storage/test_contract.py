"""The storage contract (``storage/base.py``), run against every backend (see conftest).

Targets, registration tokens and API keys; tasks and logs are in ``test_contract_tasks.py`` and
``test_contract_logs.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from swarmdeploy.storage import (
    ApiKeyRecord,
    Conflict,
    Location,
    NotFound,
    Storage,
    StorageUnavailable,
    TokenRejected,
)
from swarmdeploy.storage.records import MAX_PER_PAGE

from .helpers import add_target, line, target

# -- lifecycle ---------------------------------------------------------------------------------


async def test_call_before_open_raises_unavailable(
    storage_url: str, open_backend: Callable[[], Storage]
) -> None:
    backend = open_backend()
    with pytest.raises(StorageUnavailable):
        await backend.get_target("x")


async def test_call_after_close_raises_unavailable(storage: Storage) -> None:
    await storage.ping()
    await storage.close()
    await storage.close()
    with pytest.raises(StorageUnavailable):
        await storage.ping()


async def test_reopen_existing_database_keeps_data(
    storage_url: str, open_backend: Callable[[], Storage]
) -> None:
    first = open_backend()
    await first.open()
    await add_target(first, target("t1"))
    await first.close()
    await first.open()
    try:
        assert (await first.get_target("t1")) is not None
    finally:
        await first.close()


# -- registration ------------------------------------------------------------------------------


async def test_register_with_valid_token_creates_target_from_its_set(storage: Storage) -> None:
    await storage.create_token_set("lab", [b"a", b"b"], created_at=100, expires_at=200)
    stored = await storage.register_target(b"a", target("t1", tags=("x", "y", "x")), now=150)
    assert stored.token_set == "lab"
    assert stored.tags == ("x", "y")
    assert await storage.get_target("t1") == stored
    token_set = await storage.get_token_set("lab", now=150)
    assert token_set is not None and token_set.available == 1


async def test_register_with_spent_token_rejected(storage: Storage) -> None:
    await storage.create_token_set("lab", [b"a"], created_at=100, expires_at=200)
    await storage.register_target(b"a", target("t1"), now=150)
    with pytest.raises(TokenRejected):
        await storage.register_target(b"a", target("t2"), now=150)
    assert await storage.get_target("t2") is None


@pytest.mark.parametrize("now", [200, 250])
async def test_register_with_expired_token_rejected(storage: Storage, now: int) -> None:
    await storage.create_token_set("lab", [b"a"], created_at=100, expires_at=200)
    with pytest.raises(TokenRejected):
        await storage.register_target(b"a", target("t1"), now=now)


async def test_register_with_unknown_token_rejected(storage: Storage) -> None:
    with pytest.raises(TokenRejected):
        await storage.register_target(b"nope", target("t1"), now=1)


async def test_register_taken_id_conflicts_and_keeps_token(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await storage.create_token_set("lab", [b"a"], created_at=100, expires_at=200)
    with pytest.raises(Conflict):
        await storage.register_target(b"a", target("t1"), now=150)
    token_set = await storage.get_token_set("lab", now=150)
    assert token_set is not None and token_set.available == 1
    assert (await storage.register_target(b"a", target("t2"), now=150)).id == "t2"


async def test_register_taken_curve_key_conflicts_and_keeps_token(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await storage.create_token_set("lab", [b"a"], created_at=100, expires_at=200)
    impostor = dataclasses.replace(target("t2"), curve_key="curve-t1")
    with pytest.raises(Conflict):
        await storage.register_target(b"a", impostor, now=150)
    token_set = await storage.get_token_set("lab", now=150)
    assert token_set is not None and token_set.available == 1


async def _race(backends: list[Storage], token: bytes) -> list[object]:
    attempts = [
        b.register_target(token, target(f"racer{i}"), now=150) for i, b in enumerate(backends)
    ]
    return list(await asyncio.gather(*attempts, return_exceptions=True))


async def test_register_concurrently_with_one_token_exactly_one_wins(storage: Storage) -> None:
    await storage.create_token_set("lab", [b"a"], created_at=100, expires_at=200)
    results = await _race([storage] * 6, b"a")
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, TokenRejected) for r in results if r not in winners), results
    listed = await storage.list_targets()
    assert [t.id for t in listed.items] == [winners[0].id]  # type: ignore[attr-defined]


async def test_register_from_separate_instances_exactly_one_wins(
    storage_url: str, open_backend: Callable[[], Storage]
) -> None:
    backends = [open_backend() for _ in range(4)]
    for backend in backends:
        await backend.open()
    try:
        for round_no in range(3):
            token = f"t{round_no}".encode()
            await backends[0].create_token_set(
                f"s{round_no}", [token], created_at=100, expires_at=200
            )
            attempts = [
                b.register_target(token, target(f"r{round_no}-{i}"), now=150)
                for i, b in enumerate(backends)
            ]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            winners = [r for r in results if not isinstance(r, BaseException)]
            assert len(winners) == 1, results
            assert all(isinstance(r, TokenRejected) for r in results if r not in winners)
    finally:
        for backend in backends:
            await backend.close()


# -- targets -----------------------------------------------------------------------------------


async def test_get_unknown_target_returns_none(storage: Storage) -> None:
    assert await storage.get_target("ghost") is None


async def test_list_targets_pages_sorted_by_id(storage: Storage) -> None:
    for i in (3, 1, 4, 0, 2):
        await add_target(storage, target(f"t{i}"))
    first = await storage.list_targets(page=1, per_page=2)
    assert (first.total, [t.id for t in first.items]) == (5, ["t0", "t1"])
    last = await storage.list_targets(page=3, per_page=2)
    assert [t.id for t in last.items] == ["t4"]
    beyond = await storage.list_targets(page=4, per_page=2)
    assert (beyond.total, list(beyond.items), beyond.page) == (5, [], 4)


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (1, 0), (1, MAX_PER_PAGE + 1)])
async def test_list_with_bad_paging_raises_value_error(
    storage: Storage, page: int, per_page: int
) -> None:
    with pytest.raises(ValueError, match="page"):
        await storage.list_targets(page=page, per_page=per_page)
    with pytest.raises(ValueError, match="page"):
        await storage.list_tasks(page=page, per_page=per_page)
    with pytest.raises(ValueError, match="page"):
        await storage.list_token_sets(now=0, page=page, per_page=per_page)


async def test_list_targets_with_tags_needs_all_of_them(storage: Storage) -> None:
    await add_target(storage, target("a", tags=("x", "y")))
    await add_target(storage, target("b", tags=("x",)))
    await add_target(storage, target("c", tags=("y", "z")))
    both = await storage.list_targets(tags=["x", "y"])
    assert [t.id for t in both.items] == ["a"]
    assert [t.id for t in (await storage.list_targets(tags=["y"])).items] == ["a", "c"]
    assert (await storage.list_targets(tags=["x", "x"])).total == 2


async def test_list_targets_search_matches_id_or_name_case_insensitively(storage: Storage) -> None:
    await add_target(storage, target("Drone-01", name="north field"))
    await add_target(storage, target("robot_7", name="Hangar 100%"))
    await add_target(storage, target("robotx7"))
    assert [t.id for t in (await storage.list_targets(search="DRONE")).items] == ["Drone-01"]
    assert [t.id for t in (await storage.list_targets(search="Field")).items] == ["Drone-01"]
    # LIKE wildcards in the search are literal characters.
    assert [t.id for t in (await storage.list_targets(search="t_7")).items] == ["robot_7"]
    assert [t.id for t in (await storage.list_targets(search="100%")).items] == ["robot_7"]


async def test_update_target_partially_changes_only_given_fields(storage: Storage) -> None:
    before = await add_target(storage, target("t1", tags=("a",), name="old"))
    after = await storage.update_target("t1", name="new", updated_at=2000)
    assert after.name == "new" and after.updated_at == 2000
    assert (after.tags, after.location, after.curve_key, after.identity_key) == (
        before.tags,
        before.location,
        before.curve_key,
        before.identity_key,
    )
    moved = await storage.update_target("t1", location=Location(1.5, -2.25), updated_at=2001)
    assert moved.location == Location(1.5, -2.25) and moved.name == "new"
    cleared = await storage.update_target("t1", location=None, tags=["b", "c"], updated_at=2002)
    assert cleared.location is None and cleared.tags == ("b", "c")
    assert await storage.get_target("t1") == cleared
    assert cleared.curve_key == before.curve_key and cleared.token_set == before.token_set


async def test_update_target_tags_change_matching(storage: Storage) -> None:
    await add_target(storage, target("t1", tags=("old",)))
    await storage.update_target("t1", tags=["new", "new"], updated_at=2)
    assert await storage.match_targets([], ["old"]) == []
    assert await storage.match_targets([], ["new"]) == [("t1", ("new",))]


async def test_update_unknown_target_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.update_target("ghost", name="x", updated_at=1)


async def test_touch_target_records_contact_and_health(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await storage.touch_target("t1", seen_at=5000, health={"cpu": 0.5, "disk": {"free": 10}})
    await storage.touch_target("t1", seen_at=6000)
    await storage.touch_target("ghost", seen_at=6000)
    got = await storage.get_target("t1")
    assert got is not None and got.last_seen_at == 6000
    assert got.health == {"cpu": 0.5, "disk": {"free": 10}}
    assert got.health is not None
    got.health["cpu"] = 99  # returned values are fresh copies
    again = await storage.get_target("t1")
    assert again is not None and again.health == {"cpu": 0.5, "disk": {"free": 10}}


async def test_set_log_request_at_is_stored(storage: Storage) -> None:
    await add_target(storage, target("t1"))
    await storage.set_log_request_at("t1", 777)
    await storage.set_log_request_at("ghost", 777)
    got = await storage.get_target("t1")
    assert got is not None and got.log_request_at == 777


async def test_delete_target_returns_it_and_keeps_its_logs(storage: Storage) -> None:
    stored = await add_target(storage, target("t1", tags=("x",)))
    await storage.add_logs([line("hello", target_id="t1", seq=1)])
    assert await storage.delete_target("t1") == stored
    assert await storage.get_target("t1") is None
    assert await storage.match_targets(["t1"], ["x"]) == []
    assert await storage.target_curve_keys() == []
    assert await storage.count_logs() == 1
    with pytest.raises(NotFound):
        await storage.delete_target("t1")
    again = await add_target(storage, target("t1", tags=("x",)), now=1001)
    assert again.tags == ("x",)


async def test_match_targets_1500_mixed_ids_and_tags_returns_each_once(storage: Storage) -> None:
    await storage.create_token_set(
        "fleet", [f"h{i}".encode() for i in range(1500)], created_at=0, expires_at=10
    )
    for i in range(1500):
        tags = ("even",) if i % 2 == 0 else ("odd", "prime") if i in (3, 5, 7) else ("odd",)
        await storage.register_target(f"h{i}".encode(), target(f"d{i:04d}", tags=tags), now=1)
    ids = [f"d{i:04d}" for i in range(0, 1500, 3)] + ["missing"]
    matched = await storage.match_targets(ids, ["even", "prime"])
    expected_ids = sorted(
        {f"d{i:04d}" for i in range(1500) if i % 2 == 0 or i % 3 == 0} | {"d0005", "d0007"}
    )
    assert [m[0] for m in matched] == expected_ids
    by_id = dict(matched)
    assert by_id["d0003"] == ("prime",)
    assert by_id["d0009"] == ()
    assert by_id["d0006"] == ("even",)
    everything = await storage.match_targets([], ["even", "odd"])
    assert len(everything) == 1500
    assert len(await storage.match_targets([f"d{i:04d}" for i in range(1500)], [])) == 1500


async def test_match_targets_with_nothing_asked_returns_nothing(storage: Storage) -> None:
    await add_target(storage, target("t1", tags=("x",)))
    assert await storage.match_targets([], []) == []


async def test_target_curve_keys_lists_every_target(storage: Storage) -> None:
    await add_target(storage, target("b"))
    await add_target(storage, target("a"))
    assert await storage.target_curve_keys() == [("a", "curve-a"), ("b", "curve-b")]


# -- token sets --------------------------------------------------------------------------------


async def test_create_token_set_reports_total_and_available(storage: Storage) -> None:
    created = await storage.create_token_set(
        "lab", [b"1", b"2", b"3"], created_at=10, expires_at=20
    )
    assert (created.name, created.total, created.available) == ("lab", 3, 3)
    assert (created.created_at, created.expires_at) == (10, 20)
    assert await storage.get_token_set("lab", now=15) == created
    assert await storage.get_token_set("nope", now=15) is None


async def test_create_token_set_with_taken_name_conflicts(storage: Storage) -> None:
    await storage.create_token_set("lab", [b"1"], created_at=10, expires_at=20)
    with pytest.raises(Conflict):
        await storage.create_token_set("lab", [b"2"], created_at=10, expires_at=20)
    assert (await storage.list_token_sets(now=10)).total == 1


async def test_token_set_after_expiry_has_none_available(storage: Storage) -> None:
    await storage.create_token_set("lab", [b"1", b"2"], created_at=10, expires_at=20)
    expired = await storage.get_token_set("lab", now=20)
    assert expired is not None and (expired.total, expired.available) == (2, 0)


async def test_list_token_sets_newest_first_with_paging(storage: Storage) -> None:
    for i, name in enumerate(["a", "b", "c"]):
        await storage.create_token_set(name, [name.encode()], created_at=i, expires_at=100)
    listed = await storage.list_token_sets(now=50, page=1, per_page=2)
    assert listed.total == 3
    assert [s.name for s in listed.items] == ["c", "b"]
    assert [s.name for s in (await storage.list_token_sets(now=50, page=2, per_page=2)).items] == [
        "a"
    ]


async def test_delete_token_set_removes_its_tokens(storage: Storage) -> None:
    await storage.create_token_set("lab", [b"1"], created_at=10, expires_at=20)
    await storage.delete_token_set("lab")
    assert await storage.get_token_set("lab", now=10) is None
    with pytest.raises(TokenRejected):
        await storage.register_target(b"1", target("t1"), now=11)
    with pytest.raises(NotFound):
        await storage.delete_token_set("lab")


async def test_purge_expired_tokens_deletes_only_expired(storage: Storage) -> None:
    await storage.create_token_set("old", [b"1", b"2"], created_at=0, expires_at=20)
    await storage.create_token_set("new", [b"3"], created_at=0, expires_at=40)
    assert await storage.purge_expired_tokens(now=20) == 2
    assert await storage.purge_expired_tokens(now=20) == 0
    old = await storage.get_token_set("old", now=0)
    assert old is not None and (old.total, old.available) == (2, 0)
    assert (await storage.register_target(b"3", target("t1"), now=30)).token_set == "new"


# -- API keys ----------------------------------------------------------------------------------


def _key(key_id: str, name: str) -> ApiKeyRecord:
    return ApiKeyRecord(id=key_id, name=name, role="operator", key_hash=b"\x00hash", created_at=5)


async def test_api_keys_round_trip_sorted_by_name(storage: Storage) -> None:
    await storage.add_api_key(_key("k2", "alice"))
    await storage.add_api_key(_key("k1", "bob"))
    assert await storage.get_api_key("k2") == _key("k2", "alice")
    assert await storage.get_api_key("nope") is None
    assert [k.name for k in await storage.list_api_keys()] == ["alice", "bob"]
    await storage.touch_api_key("k1", 99)
    await storage.touch_api_key("ghost", 99)
    touched = await storage.get_api_key("k1")
    assert touched is not None and touched.last_used_at == 99


@pytest.mark.parametrize(("key_id", "name"), [("k1", "other"), ("k9", "alice")])
async def test_add_api_key_with_taken_id_or_name_conflicts(
    storage: Storage, key_id: str, name: str
) -> None:
    await storage.add_api_key(_key("k1", "alice"))
    with pytest.raises(Conflict):
        await storage.add_api_key(_key(key_id, name))
    assert len(await storage.list_api_keys()) == 1


async def test_delete_api_key_removes_it(storage: Storage) -> None:
    await storage.add_api_key(_key("k1", "alice"))
    await storage.delete_api_key("k1")
    assert await storage.get_api_key("k1") is None
    with pytest.raises(NotFound):
        await storage.delete_api_key("k1")
