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


def test_global_failure_limit_refuses_only_addresses_that_failed_recently() -> None:
    clock = FakeClock()
    limiter = RegistrationLimiter(
        per_address_per_min=60, burst=5, global_per_min=60, clock=clock, quiet_s=600
    )  # global failure burst = max(5, 60/6) = 10
    for i in range(11):
        assert limiter.check(f"10.0.0.{i}") == 0
        limiter.failed(f"10.0.0.{i}")
    assert limiter.under_attack
    assert limiter.check("10.0.0.1") == 600  # failed just now: wait out the quiet period
    assert limiter.check("10.0.9.9") == 0  # a new address is still checked
    clock.now += 601
    assert not limiter.under_attack and limiter.check("10.0.0.1") == 0


def test_ipv6_addresses_are_limited_per_64() -> None:
    limiter = RegistrationLimiter(per_address_per_min=1, burst=1, global_per_min=600,
                                  clock=FakeClock())  # fmt: skip
    assert limiter.check("2001:db8:1:2::1") == 0
    assert limiter.check("2001:db8:1:2:ffff::7") > 0
    assert limiter.check("2001:db8:1:3::1") == 0


def test_retry_after_is_whole_seconds() -> None:
    clock = FakeClock()
    limiter = RegistrationLimiter(per_address_per_min=6, burst=1, global_per_min=600, clock=clock)
    assert limiter.check("a") == 0
    assert limiter.check("a") == 10
