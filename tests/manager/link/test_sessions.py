"""Contact state per target: online/offline, bye, throttled writes (docs/protocol.md §6.1)."""

from __future__ import annotations

from swarmdeploy.manager.link.sessions import Sessions


def sessions() -> Sessions:
    return Sessions(online_timeout_ms=3_000, touch_interval_ms=1_000)


def test_first_contact_comes_online_and_writes() -> None:
    s = sessions()
    contact = s.seen("t", 10_000)
    assert contact.write and contact.came_online
    assert s.is_online("t") and s.last_seen("t") == 10_000


def test_writes_throttled_until_interval_or_forced() -> None:
    s = sessions()
    s.seen("t", 10_000)
    assert not s.seen("t", 10_500).write
    assert s.seen("t", 10_600, force_write=True).write
    assert not s.seen("t", 11_000).write
    assert s.seen("t", 11_600).write


def test_sweep_marks_silent_targets_offline_once() -> None:
    s = sessions()
    s.seen("a", 10_000)
    s.seen("b", 12_000)
    assert s.sweep(13_001) == ["a"]
    assert s.sweep(14_000) == []
    assert not s.is_online("a") and s.is_online("b")
    assert s.seen("a", 14_000).came_online


def test_bye_is_offline_at_once_until_next_message() -> None:
    s = sessions()
    s.seen("t", 10_000)
    assert s.bye("t", 10_100)
    assert not s.is_online("t") and s.bye_at("t") == 10_100
    assert s.seen("t", 10_200).came_online
    assert s.bye_at("t") is None


def test_forget_drops_everything() -> None:
    s = sessions()
    s.seen("t", 1)
    s.forget("t")
    assert s.last_seen("t") is None and s.online_ids() == []
