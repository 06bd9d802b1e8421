"""A deployment's progress from its task document: stages, failure groups, waiting devices."""

from __future__ import annotations

from typing import Any

import pytest

from swarmdeploy.client.progress import SAMPLE, progress


def _task(*rows: tuple[str, str, str]) -> dict[str, Any]:
    return {"targets": [{"id": i, "state": s, "reason": r} for i, s, r in rows]}


def test_identical_reasons_are_one_group_with_a_count_largest_first() -> None:
    rows = [(f"d{i:03d}", "install_failed", "No space left on device") for i in range(37)]
    rows += [("x1", "declined", "no trust anchor"), ("x2", "failed", "exit 1")]
    rows += [("ok1", "exited", ""), ("ok2", "running", "")]
    p = progress(_task(*rows))
    first = p.failures[0]
    assert (first.state, first.reason, first.count) == (
        "install_failed",
        "No space left on device",
        37,
    )
    assert len(first.sample) == SAMPLE and first.sample[0] == "d000"
    assert [g.count for g in p.failures] == [37, 1, 1]
    assert p.failed == 39 and p.succeeded == 2 and p.total == 41


def test_stages_hold_devices_by_state_in_pipeline_order() -> None:
    p = progress(
        _task(
            ("b", "built", ""),
            ("a1", "pending", ""),
            ("t1", "transferring", ""),
            ("i1", "installing", ""),
            ("r1", "running", ""),
        )
    )
    assert list(p.tree) == ["build", "announce", "transfer", "install", "run"]
    assert p.tree["install"] == {"installing": ["i1"]}
    assert p.waiting == ("a1", "i1", "t1") and not p.finished
    assert p.done_fraction == pytest.approx(2 / 5)


def test_finished_only_when_nothing_waits_or_runs() -> None:
    assert progress(_task(("a", "exited", ""), ("b", "stopped", "by x"))).finished
    running = progress(_task(("a", "exited", ""), ("b", "running", "")))
    assert not running.finished and running.waiting == ()
    assert progress({"targets": []}).done_fraction == 1.0


def test_a_state_this_client_does_not_know_is_shown_under_other() -> None:
    p = progress(_task(("a", "teleported", ""), ("b", "exited", "")))
    assert p.tree["other"] == {"teleported": ["a"]} and p.by_state["teleported"] == 1
    assert p.total == 2 and p.failed == 0
