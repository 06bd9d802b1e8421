"""The live view and the plain lines of ``tasks watch`` for a task document (pure
rendering: rich's recording console stands in for the terminal)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from swarmdeploy.cli.live import (
    PlainShow,
    failure_lines,
    finished,
    group_cells,
    plain_line,
    render,
    rollout_line,
)
from swarmdeploy.client.progress import progress

TASK: dict[str, Any] = {
    "id": "t1",
    "description": "fw \x1b[2J 2.0",
    "targets": [
        {"id": "a", "state": "exited", "reason": ""},
        {"id": "b", "state": "install_failed", "reason": "exit status 1"},
        {"id": "c", "state": "install_failed", "reason": "exit status 1"},
        {"id": "d\x1b]52;c;x\x07", "state": "transferring", "reason": ""},
    ],
}


def test_live_view_shows_counts_bar_failures_and_waiting_escaped() -> None:
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render(TASK, progress(TASK)))
    text = console.export_text()
    assert "task t1" in text and "3/4 settled" in text
    assert "install_failed" in text and "exit status 1" in text and "b, c" in text
    assert "waiting (1)" in text
    assert "\x1b[2J" not in text and "\x1b]52" not in text and "\\x1b" in text


def test_plain_lines_and_summary_have_no_control_codes() -> None:
    now = progress(TASK)
    line = plain_line(now)
    assert line.startswith("3/4 settled: exited 1, install_failed 2, transferring 1")
    assert "\x1b" not in line and "waiting: d\\x1b" in line
    assert failure_lines(now) == ["2 x install_failed: exit status 1 (b, c)"]
    assert now.summary() == "1 of 4 target(s) succeeded, 2 failed, 1 still waiting"
    assert not now.settled and not now.all_succeeded


def test_plain_show_prints_only_changes() -> None:
    printed: list[str] = []
    show = PlainShow(printed.append)
    now = progress(TASK)
    show(TASK, now)
    show(TASK, now)
    assert len(printed) == 1 and printed[0].endswith(plain_line(now))
    done = {**TASK, "targets": [{"id": "a", "state": "exited", "reason": ""}]}
    show(done, progress(done))
    assert len(printed) == 2 and progress(done).all_succeeded


def _staged(state: str, current: int, reason: str = "") -> dict[str, Any]:
    """A task document of a staged rollout: canary (2), group 2 (3), rest (1)."""
    rows = [("c1", "exited"), ("c2", "install_failed"), ("m1", "pending"), ("m2", "pending"),
            ("m3", "pending"), ("r1", "pending")]  # fmt: skip
    groups = [
        {"name": "canary", "size": 2, "succeeded": 1, "failed": 1, "notAnnounced": 0},
        {"name": "2", "size": 3, "succeeded": 0, "failed": 0, "notAnnounced": 3},
        {"name": "rest\x1b[2J", "size": 1, "succeeded": 0, "failed": 0, "notAnnounced": 1},
    ]
    return {
        "id": "t2",
        "targets": [{"id": i, "state": s, "reason": ""} for i, s in rows],
        "rollout": {"state": state, "currentGroup": current, "reason": reason, "groups": groups},
    }


def test_live_view_shows_the_rollout_state_reason_and_each_group() -> None:
    doc = _staged("halted", 0, "group canary: 1 of 2 target(s) failed")
    console = Console(record=True, width=140, force_terminal=True)
    console.print(render(doc, progress(doc)))
    text = console.export_text()
    assert "rollout halted, group 1 of 3 (canary): group canary: 1 of 2 target(s) failed" in text
    lines = text.splitlines()
    canary = next(line for line in lines if line.strip().startswith("canary"))
    assert canary.split() == ["canary", "halted", "2", "1", "1", "0"]
    second = next(line for line in lines if line.strip().startswith("2 "))
    assert second.split() == ["2", "waiting", "3", "0", "0", "3"]
    assert "\x1b[2J" not in text and "rest\\x1b[2J" in text


def test_plain_line_names_the_rollout_and_groups_and_a_halt_ends_following() -> None:
    running = _staged("running", 1)
    line = plain_line(progress(running), running)
    assert "| rollout running, group 2 of 3 (2) |" in line
    assert "canary done 1/2 ok, 1 failed; 2 running 0/3 ok, 0 failed" in line
    assert "\x1b" not in line
    assert not finished(running, progress(running))  # later groups still to come
    halted = _staged("halted", 0, "too many failed")
    assert finished(halted, progress(halted))
    assert rollout_line(halted) == "rollout halted, group 1 of 3 (canary): too many failed"
    done = _staged("completed", 2)
    assert [mark for _, mark, *_ in group_cells(done)] == ["done", "done", "done"]
    assert rollout_line(TASK) is None and group_cells(TASK) == []
    assert plain_line(progress(TASK), TASK) == plain_line(progress(TASK))
