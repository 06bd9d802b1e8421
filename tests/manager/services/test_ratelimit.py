"""Token buckets for registration attempts, driven by a fake monotonic clock."""

from __future__ import annotations

from swarmdeploy.manager.services.ratelimit import RegistrationLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_wait_then_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=3, clock=clock)
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == 1.0
    clock.now += 1.0
    assert bucket.take("a") == 0.0
    assert bucket.take("b") == 0.0  # other keys have their own bucket


def test_refused_attempt_spends_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=1, clock=clock)
    bucket.take("a")
    for _ in range(5):
        assert bucket.take("a") > 0
    clock.now += 1.0
    assert bucket.take("a") == 0.0


def test_bucket_count_is_bounded() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1, clock=FakeClock(), max_keys=10)
    for i in range(100):
        bucket.take(f"addr-{i}")
    assert len(bucket._buckets) == 10


def test_global_limit_caps_many_addresses() -> None:
    clock = FakeClock()
    limiter = RegistrationLimiter(
        per_address_per_min=60, burst=5, global_per_min=60, clock=clock
    )  # global burst = max(5, 60/6) = 10
    results = [limiter.check(f"10.0.0.{i}") for i in range(20)]
    assert results[:10] == [0] * 10
    assert all(wait >= 1 for wait in results[10:])


def test_retry_after_is_whole_seconds() -> None:
    clock = FakeClock()
    limiter = RegistrationLimiter(per_address_per_min=6, burst=1, global_per_min=600, clock=clock)
    assert limiter.check("a") == 0
    assert limiter.check("a") == 10
