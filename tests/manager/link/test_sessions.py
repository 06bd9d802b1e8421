"""Contact state per target: online/offline, bye, throttled writes (docs/protocol.md §6.1)."""

from __future__ import annotations

from swarmdeploy.manager.link.sessions import Sessions
from swarmdeploy.storage.records import ContactWrite, HealthSample


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


def _due(s: Sessions, now_ms: int) -> list[tuple[str, int]]:
    return [(w.target_id, w.seen_at) for w in s.due_writes(now_ms)]


def test_due_writes_hand_out_unstored_contacts_once_per_interval() -> None:
    s = sessions()
    s.seen("a", 10_000)  # written at once (first contact)
    s.seen("b", 10_000)
    s.seen("a", 10_400)
    assert _due(s, 10_500) == [("a", 10_400)]
    assert _due(s, 11_000) == []  # within the touch interval
    s.seen("b", 11_200)
    # "a" was not confirmed as stored: handed out again, with the newer "b"
    due = s.due_writes(11_500)
    assert [(w.target_id, w.seen_at) for w in due] == [("a", 10_400), ("b", 11_200)]
    for write in due:
        s.written(write)
    assert _due(s, 12_500) == []
    s.seen("a", 12_600)
    s.written(ContactWrite("a", 10_400))  # an older stored time does not hide the newer one
    assert _due(s, 13_600) == [("a", 12_600)]
    assert s.last_seen("a") == 12_600 and s.is_online("a")


def test_held_health_is_handed_out_with_the_contacts_and_kept_until_stored() -> None:
    s = sessions()
    s.seen("a", 10_000)
    assert not s.hold_health("ghost", {"cpu": 1}, None)  # never heard: store it now
    sample = HealthSample("a", 10_100, cpu_percent=1.0)
    assert s.hold_health("a", {"cpu": 1}, sample)
    s.seen("a", 10_100)
    assert s.health("a") == {"cpu": 1}
    [write] = s.due_writes(10_500)
    assert (write.health, write.sample, write.seen_at) == ({"cpu": 1}, sample, 10_100)
    s.seen("a", 10_700)  # a newer report arrives while the batch is being stored
    assert s.hold_health("a", {"cpu": 2}, None)
    s.written(write)
    assert s.health("a") == {"cpu": 2}  # the newer one stays held ...
    [again] = s.due_writes(11_600)
    assert (again.health, again.sample) == ({"cpu": 2}, None)  # ... the stored sample not
    s.written(again)
    assert s.health("a") is None and s.due_writes(12_700) == []
    assert s.hold_health("a", {"cpu": 3}, sample)
    later = HealthSample("a", 13_000, cpu_percent=4.0)
    assert not s.hold_health("a", {"cpu": 4}, later)  # a second sample: store now
    assert s.health("a") == {"cpu": 3}  # nothing changed by the refusal
    assert s.hold_health("a", {"cpu": 4}, None)  # the newer document replaces it
    [held] = s.due_writes(13_800)
    assert (held.health, held.sample) == ({"cpu": 4}, sample)  # the older sample is kept


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
    assert _due(s, 11_000) == [("t", 10_400)]
