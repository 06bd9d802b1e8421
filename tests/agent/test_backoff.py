"""The re-send backoff rule (agent/backoff.py): doubling, cap, jitter bounds, reset."""

from __future__ import annotations

import random

import pytest

from swarmdeploy.agent.backoff import MAX_WAIT_S, Backoff


def waits(backoff: Backoff, count: int) -> list[float]:
    """The waits of ``count`` sends in a row, each made as soon as it is due."""
    now, out = 0.0, []
    for _ in range(count):
        assert backoff.due(now)
        backoff.sent(now)
        out.append(backoff.wait_s)
        assert not backoff.due(now + backoff.wait_s - 1e-6)
        now += backoff.wait_s
    return out


def test_fresh_backoff_is_due_at_once() -> None:
    assert Backoff(2.0).due(0.0)


def test_waits_double_from_the_base_up_to_eight_times_it() -> None:
    backoff = Backoff(2.0, rng=lambda: 0.5)  # jitter factor exactly 1.0
    assert waits(backoff, 6) == pytest.approx([2.0, 4.0, 8.0, 16.0, 16.0, 16.0])


def test_wait_never_exceeds_the_absolute_ceiling() -> None:
    backoff = Backoff(30.0, rng=lambda: 0.999999)
    assert max(waits(backoff, 6)) == pytest.approx(MAX_WAIT_S)


def test_base_above_the_ceiling_is_kept() -> None:
    assert waits(Backoff(200.0, rng=lambda: 0.5), 3) == pytest.approx([200.0] * 3)


def test_jitter_stays_within_plus_minus_twenty_percent() -> None:
    rng = random.Random(7)
    seen = []
    for _ in range(500):
        wait = waits(Backoff(10.0, rng=rng.random), 1)[0]
        assert 8.0 <= wait <= 12.0
        seen.append(wait)
    assert max(seen) - min(seen) > 3.0  # the waits are really spread


def test_jitter_extremes_scale_the_nominal_wait() -> None:
    assert waits(Backoff(10.0, rng=lambda: 0.0), 2) == pytest.approx([8.0, 16.0])


def test_reset_brings_the_next_wait_back_to_the_base() -> None:
    backoff = Backoff(1.0, rng=lambda: 0.5)
    waits(backoff, 3)
    backoff.sent(100.0)
    assert backoff.wait_s == pytest.approx(8.0)
    backoff.reset()
    assert not backoff.due(101.0)  # the wait already running is kept
    backoff.sent(108.0)
    assert backoff.wait_s == pytest.approx(1.0)
    assert backoff.due(109.0)


def test_non_positive_base_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(0.0)
