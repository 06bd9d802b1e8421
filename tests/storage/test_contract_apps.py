"""The storage contract for apps, standing releases and selector filtering, on every backend."""

from __future__ import annotations

import pytest

from swarmdeploy.protocol.selector import Selector, parse_selector
from swarmdeploy.storage import Conflict, NotFound, Storage
from swarmdeploy.storage.records import TaskAppRecord
from tests.storage.helpers import add_target, row, target, task


def app_row(
    task_id: str, app: str = "detector", *, at: int = 1000, standing: bool = False
) -> TaskAppRecord:
    """An app row with every field set."""
    return TaskAppRecord(
        task_id=task_id,
        app=app,
        created_at=at,
        version="2.3",
        selector="camera,+outdoor,!lab",
        standing=standing,
        remove=standing,
    )


async def test_task_app_round_trips_and_goes_with_its_task(storage: Storage) -> None:
    await storage.add_task(task("k1"), [])
    await storage.add_task_app(app_row("k1", standing=True))
    assert await storage.get_task_app("k1") == app_row("k1", standing=True)
    assert await storage.get_task_app("k2") is None
    await storage.delete_task("k1")
    assert await storage.get_task_app("k1") is None
    assert await storage.list_task_apps() == []


async def test_task_app_of_unknown_task_or_twice_is_refused(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.add_task_app(app_row("nope"))
    await storage.add_task(task("k1"), [])
    await storage.add_task_app(app_row("k1"))
    with pytest.raises(Conflict):
        await storage.add_task_app(app_row("k1", "other"))


async def test_task_apps_list_newest_first_by_app_and_standing(storage: Storage) -> None:
    for task_id, app, at, standing in (
        ("k1", "detector", 1000, True),
        ("k2", "detector", 3000, False),
        ("k3", "uploader", 2000, True),
        ("k4", "detector", 3000, True),
    ):
        await storage.add_task(task(task_id, created_at=at), [])
        await storage.add_task_app(app_row(task_id, app, at=at, standing=standing))
    assert [r.task_id for r in await storage.list_task_apps()] == ["k4", "k2", "k3", "k1"]
    assert [r.task_id for r in await storage.list_task_apps(app="detector")] == ["k4", "k2", "k1"]
    kept = await storage.list_task_apps(standing=True)
    assert [r.task_id for r in kept] == ["k4", "k3", "k1"]
    assert [r.task_id for r in await storage.list_task_apps(app="uploader", standing=False)] == []


async def test_rows_added_to_a_stored_task_skip_targets_it_has(storage: Storage) -> None:
    for name in ("a", "b", "c"):
        await add_target(storage, target(name))
    await storage.add_task(task("k1"), [row("k1", "a", "running")])
    added = await storage.add_task_targets("k1", [row("k1", "a"), row("k1", "b"), row("k1", "c")])
    assert added == 2
    rows = {r.target_id: r.state for r in await storage.task_targets("k1")}
    assert rows == {"a": "running", "b": "pending", "c": "pending"}
    assert await storage.add_task_targets("k1", [row("k1", "b")]) == 0
    with pytest.raises(NotFound):
        await storage.add_task_targets("nope", [row("nope", "a")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("camera", ["cam-1", "cam-2", "cam-lab"]),
        ("camera,id:gw-1", ["cam-1", "cam-2", "cam-lab", "gw-1"]),
        ("+camera,+outdoor", ["cam-2"]),
        ("camera,!lab", ["cam-1", "cam-2"]),
        ("!lab", ["cam-1", "cam-2", "gw-1"]),
        ("camera,!id:cam-1", ["cam-2", "cam-lab"]),
        ("gateway,+outdoor", []),
        ("", ["cam-1", "cam-2", "cam-lab", "gw-1"]),
    ],
)
async def test_list_targets_filters_by_selector(
    storage: Storage, text: str, expected: list[str]
) -> None:
    fleet = {
        "cam-1": ("camera",),
        "cam-2": ("camera", "outdoor"),
        "cam-lab": ("camera", "lab", "outdoor2"),
        "gw-1": ("gateway",),
    }
    for name, tags in fleet.items():
        await add_target(storage, target(name, tags=tags))
    selector = parse_selector(text)
    page = await storage.list_targets(selector=selector, per_page=50)
    assert [t.id for t in page.items] == expected
    assert page.total == len(expected)
    # the same answer as the pure matcher (one meaning everywhere)
    if not selector.empty:
        assert expected == [n for n, tags in fleet.items() if selector.matches(n, tags)]


async def test_list_targets_selector_combines_with_tags_and_search(storage: Storage) -> None:
    await add_target(storage, target("cam-1", tags=("camera", "x"), name="north"))
    await add_target(storage, target("cam-2", tags=("camera",), name="south"))
    page = await storage.list_targets(selector=Selector.of(tags=["camera"]), search="nor")
    assert [t.id for t in page.items] == ["cam-1"]
    page = await storage.list_targets(selector=Selector.of(tags=["camera"]), tags=["x"])
    assert [t.id for t in page.items] == ["cam-1"]
