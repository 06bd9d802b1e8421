"""App documents (``GET /apps``, ``/apps/{name}``, ``/targets/{id}/apps``) -> GUI rows:
release labels, behind and why, the stop control, escaping of free text."""

from __future__ import annotations

from typing import Any

from swarmdeploy.gui.rows import app_row, device_app_row, device_app_rows, release_row

NOW = 1_800_000_000_000


def _device_app(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "targetId": "pi-1",
        "app": "detector",
        "desired": {"taskId": "t2", "version": "2.0"},
        "running": {"taskId": "t1", "version": None},
        "behind": True,
        "state": "install_failed",
        "reason": "install command 'exit 3' exited 3",
    }
    doc.update(fields)
    return doc


def test_a_device_behind_shows_desired_running_and_why() -> None:
    [row] = device_app_rows([_device_app()])
    assert row["key"] == "detector"
    assert (row["desired"], row["running"], row["behind"]) == ("t2 (2.0)", "t1", "behind")
    assert row["why"] == "install_failed: install command 'exit 3' exited 3"
    assert row["canStop"] is True  # t1 still runs


def test_a_device_up_to_date_has_no_why_and_a_stopped_app_no_stop() -> None:
    current = device_app_row(
        _device_app(desired={"taskId": "t1"}, behind=False, state="running"), "targetId"
    )
    assert (current["key"], current["behind"], current["why"]) == ("pi-1", "", "")
    stopped = device_app_row(
        _device_app(desired=None, running=None, behind=False, state=None), "targetId"
    )
    assert (stopped["desired"], stopped["running"], stopped["canStop"]) == ("—", "—", False)
    waiting = device_app_row(_device_app(running=None, state="pending", reason=""), "app")
    assert waiting["canStop"] is True and waiting["why"] == "pending: —"


def test_free_text_from_descriptors_and_devices_is_shown_escaped() -> None:
    row = device_app_row(
        _device_app(desired={"taskId": "t2", "version": "2\x1b[31m"}, reason="bad\u202e"), "app"
    )
    assert row["desired"] == "t2 (2\\x1b[31m)" and row["why"].endswith("bad\\u202e")
    release = {
        "taskId": "t2",
        "version": "v\x07",
        "createdAt": NOW - 5_000,
        "standing": True,
        "remove": True,
        "selector": "camera,!lab\x1b",
        "stopped": False,
        "stateCounts": {"running": 2, "failed": 1},
    }
    assert release_row(release, NOW) == {
        "key": "t2",
        "release": "t2 (v\\x07)",
        "created": "5 s ago",
        "standing": "yes, removed where it stops matching",
        "selector": "camera,!lab\\x1b",
        "status": "active",
        "states": "1 failed, 2 running",
    }
    listed = app_row(
        {"name": "detector", "releases": 2, "latest": release, "devices": 3, "running": 2,
         "behind": 1}
    )  # fmt: skip
    assert (listed["latest"], listed["standing"], listed["behind"]) == ("t2 (v\\x07)", "yes", 1)
    assert release_row({**release, "stopped": True, "remove": False}, NOW)["status"] == "stopped"
