"""The live view and the plain lines of ``tasks watch`` for a task document (pure
rendering: rich's recording console stands in for the terminal)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from swarmdeploy.cli.live import PlainShow, failure_lines, plain_line, render
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
