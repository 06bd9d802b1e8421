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


def test_only_first_forced_or_returning_contacts_are_written_at_once() -> None:
    s = sessions()
    s.seen("t", 10_000)
    assert not s.seen("t", 10_500).write
    assert s.seen("t", 10_600, force_write=True).write
    assert not s.seen("t", 11_000).write
    assert not s.seen("t", 11_600).write
    s.sweep(15_000)
    back = s.seen("t", 15_001)
    assert back.came_online and back.write


def test_due_writes_hand_out_unstored_contacts_once_per_interval() -> None:
    s = sessions()
    s.seen("a", 10_000)  # written at once (first contact)
    s.seen("b", 10_000)
    s.seen("a", 10_400)
    assert s.due_writes(10_500) == [("a", 10_400)]
    assert s.due_writes(11_000) == []  # within the touch interval
    s.seen("b", 11_200)
    # "a" was not confirmed as stored: handed out again, with the newer "b"
    assert s.due_writes(11_500) == [("a", 10_400), ("b", 11_200)]
    s.written("a", 10_400)
    s.written("b", 11_200)
    assert s.due_writes(12_500) == []
    s.seen("a", 12_600)
    s.written("a", 10_400)  # an older stored time does not hide the newer contact
    assert s.due_writes(13_600) == [("a", 12_600)]
    assert s.last_seen("a") == 12_600 and s.is_online("a")


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


def test_seen_quietly_only_for_online_targets_already_written() -> None:
    s = sessions()
    assert not s.seen_quietly("t", 10_000)  # first contact: through seen()
    assert s.last_seen("t") is None
    s.seen("t", 10_000)
    assert s.bye("t", 10_100)
    assert not s.seen_quietly("t", 10_200)  # offline after bye: comes online through seen()
    assert s.seen("t", 10_300).came_online
    assert s.seen_quietly("t", 10_400)
    assert s.last_seen("t") == 10_400 and s.is_online("t")
    assert s.due_writes(11_000) == [("t", 10_400)]
