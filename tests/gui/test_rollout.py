"""A task's staged rollout -> the task page's summary, group rows and enabled actions."""

from __future__ import annotations

from typing import Any

import pytest

from swarmdeploy.gui.pages.bulk import bulk_body
from swarmdeploy.gui.rollout import ACTIONS, group_rows, group_state, offered, summary

NOW = 1_800_000_000_000


def _group(name: str, size: int, **fields: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "name": name,
        "size": size,
        "succeeded": 0,
        "failed": 0,
        "notAnnounced": size,
        "successThreshold": 100.0,
        "errorThreshold": 0.0,
        "soak": None,
        "stateCounts": {"pending": size},
    }
    group.update(fields)
    return group


def _task(state: str, current: int = 0, **rollout: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "state": state,
        "currentGroup": current,
        "reason": "",
        "soakUntil": None,
        "updatedAt": NOW,
        "groups": [_group("canary", 2), _group("2", 8)],
    }
    doc.update(rollout)
    return {"id": "t1", "status": "pending", "stoppedAt": None, "rollout": doc}


def test_a_running_rollout_offers_pause_and_abort_only() -> None:
    assert offered(_task("running")) == {
        "pause": True,
        "resume": False,
        "abort": True,
        "retry": False,
        "rollback": False,
    }


@pytest.mark.parametrize("state", ["paused", "halted"])
def test_a_paused_or_halted_rollout_offers_resume_not_pause(state: str) -> None:
    enabled = offered(_task(state))
    assert enabled["resume"] and enabled["abort"] and not enabled["pause"]


@pytest.mark.parametrize("state", ["aborted", "completed"])
def test_an_ended_rollout_offers_no_state_change(state: str) -> None:
    enabled = offered(_task(state))
    assert not (enabled["pause"] or enabled["resume"] or enabled["abort"])


def test_failed_devices_enable_retry_and_announced_ones_roll_back() -> None:
    canary = _group("canary", 2, failed=1, succeeded=1, notAnnounced=0)
    task = _task("halted", groups=[canary, _group("2", 8)])
    enabled = offered(task)
    assert enabled["retry"] and enabled["rollback"]


def test_a_stopped_task_offers_only_roll_back() -> None:
    canary = _group("canary", 2, failed=1, succeeded=1, notAnnounced=0)
    task = _task("halted", groups=[canary, _group("2", 8)])
    task["stoppedAt"] = NOW
    assert [name for name, on in offered(task).items() if on] == ["rollback"]


def test_every_action_is_one_post_route_with_a_question() -> None:
    names = [a.name for a in ACTIONS]
    assert names == ["pause", "resume", "abort", "retry", "rollback"]
    assert all("?" in a.question for a in ACTIONS)


def test_group_states_follow_the_current_group() -> None:
    rollout = _task("halted", current=1, groups=[_group("a", 1), _group("b", 1), _group("c", 1)])
    states = [group_state(rollout["rollout"], i) for i in range(3)]
    assert states == ["done", "halted", "waiting"]
    aborted = _task("aborted", groups=[_group("a", 1), _group("b", 1)])["rollout"]
    assert [group_state(aborted, i) for i in range(2)] == ["aborted", "not announced"]
    soaking = _task("running", soakUntil=NOW + 5000)["rollout"]
    assert group_state(soaking, 0) == "soaking"
    done = _task("completed", current=1)["rollout"]
    assert [group_state(done, i) for i in range(2)] == ["done", "done"]


def test_group_rows_count_and_escape_names() -> None:
    evil = _group("lab\x1b[2J", 3, stateCounts={"failed": 1, "exited": 2}, soak=60)
    [row] = group_rows(_task("running", groups=[evil])["rollout"])
    assert row["name"] == "lab\\x1b[2J"
    assert row["states"] == "2 exited, 1 failed"
    assert row["thresholds"] == "success ≥ 100 %, errors ≤ 0 %, soak 60 s"


def test_summary_names_the_current_group_and_the_soak() -> None:
    assert summary(_task("halted")["rollout"], NOW) == "Rollout halted · group 1 of 2 (canary)"
    soaking = _task("running", soakUntil=NOW + 42_500)["rollout"]
    assert summary(soaking, NOW).endswith("· soak ends in 42 s")
    assert summary(_task("completed", current=1)["rollout"], NOW) == "Rollout completed"


def test_bulk_body_names_the_ids_once_and_only_the_changes() -> None:
    body = bulk_body(["a", "b", "a"], ["x"], [], None)
    assert body == {"selection": {"ids": ["a", "b"]}, "addTags": ["x"]}
    located = bulk_body(["a"], [], ["y"], {"lat": 1.0, "lon": 2.0})
    assert located == {
        "selection": {"ids": ["a"]},
        "removeTags": ["y"],
        "location": {"lat": 1.0, "lon": 2.0},
    }
    assert bulk_body(["a"], [], [], None) is None
    cleared = bulk_body(["a"], [], [], {"lat": 1.0, "lon": 2.0}, clear_location=True)
    assert cleared == {"selection": {"ids": ["a"]}, "clearLocation": True}
