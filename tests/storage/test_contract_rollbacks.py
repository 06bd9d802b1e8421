"""The storage contract for rollback links (``task_rollbacks``), on SQLite (plain) and
PostgreSQL: the SQL backends that stay (the in-memory twin is being removed)."""

from __future__ import annotations

import pytest

from swarmdeploy.storage import Conflict, NotFound, Storage
from swarmdeploy.storage.records import RollbackRecord
from tests.storage.helpers import task


async def test_links_read_both_ways_and_go_with_the_rollback_task(sql_storage: Storage) -> None:
    s = sql_storage
    for task_id in ("v2", "back1", "back2"):
        await s.add_task(task(task_id), [])
    first = RollbackRecord("back1", "v2", 2000)
    second = RollbackRecord("back2", "v2", 3000)
    await s.add_rollback(second)
    await s.add_rollback(first)
    assert await s.rollback_links("v2") == [first, second]
    assert await s.rollback_links("back1") == [first]
    assert await s.rollback_links("other") == []
    # the rolled-back task goes: the rollback task still names it
    await s.delete_task("v2")
    assert await s.rollback_links("back2") == [second]
    await s.delete_task("back2")
    assert await s.rollback_links("back2") == []
    assert await s.rollback_links("v2") == [first]


async def test_link_of_unknown_task_or_twice_is_refused(sql_storage: Storage) -> None:
    with pytest.raises(NotFound):
        await sql_storage.add_rollback(RollbackRecord("nope", "v2", 1))
    await sql_storage.add_task(task("back"), [])
    await sql_storage.add_rollback(RollbackRecord("back", "v2", 1))
    with pytest.raises(Conflict):
        await sql_storage.add_rollback(RollbackRecord("back", "v3", 2))
