"""Target documents -> device table rows: trust labels, times, escaping."""

from __future__ import annotations

from typing import Any

from swarmdeploy.gui.rows import ago, outcome, printable, target_row, trust_label

NOW = 1_800_000_000_000


def _target(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "t1", "name": "n", "tags": ["a", "b"], "online": True}
    doc.update(fields)
    return doc


def test_control_characters_and_bidi_overrides_are_shown_escaped() -> None:
    assert (
        printable("X-\x1b[2J\x1b]8;;http://evil/\x1b\\") == "X-\\x1b[2J\\x1b]8;;http://evil/\\x1b\\"
    )
    assert printable("a\u202eb\x9bc\x7f") == "a\\u202eb\\x9bc\\x7f"
    assert printable("robot 7 ü 日本") == "robot 7 ü 日本"


def test_trust_labels_follow_the_security_report() -> None:
    assert trust_label(_target(security={"mode": "verified", "trustsThisManager": True})) == (
        "verified"
    )
    foreign = _target(security={"mode": "verified", "trustsThisManager": False})
    assert trust_label(foreign) == "FOREIGN CA"
    assert trust_label(_target(insecureLab=True)) == "INSECURE LAB"
    assert trust_label(_target(security={"mode": "no_anchor"})) == "NO ANCHOR"
    assert trust_label(_target()) == "unknown"


def test_last_seen_is_relative_then_a_date() -> None:
    assert ago(None, NOW) == "never"
    assert ago(NOW - 12_000, NOW) == "12 s ago"
    assert ago(NOW - 5 * 60_000, NOW) == "5 min ago"
    assert ago(NOW - 3 * 3_600_000, NOW) == "3 h ago"
    assert ago(NOW - 40 * 86_400_000, NOW) == "2026-12-06"


def test_row_keeps_the_raw_id_as_key_and_escapes_what_it_shows() -> None:
    row = target_row(_target(id="t\x1b1", name="evil\x1b]0;title\x07", online=False), NOW)
    assert row["key"] == "t\x1b1"
    assert row["id"] == "t\\x1b1" and row["name"] == "evil\\x1b]0;title\\x07"
    assert row["online"] == "offline" and row["tags"] == "a, b" and row["location"] == ""
    located = target_row(_target(location={"lat": 45.07, "lon": 7.68}), NOW)
    assert located["location"] == "45.07000, 7.68000"
    assert row["latest"] == "" and row["history"] == []


def test_history_is_the_outcome_of_each_recent_task_newest_first() -> None:
    recent = [
        {"task": "t3", "state": "running"},
        {"task": "t2", "state": "install_failed"},
        {"task": "t1", "state": "stopped"},
        {"task": "t0", "state": "transferring"},
    ]
    row = target_row(_target(recentTasks=recent), NOW)
    assert row["latest"] == "running"
    assert [h["outcome"] for h in row["history"]] == ["ok", "failed", "stopped", "active"]
    assert row["history"][1]["title"] == "t2: install_failed"
    assert outcome(None) == "none"
