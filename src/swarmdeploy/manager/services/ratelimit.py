"""Token-bucket rate limiting of registration attempts per client address and overall.

Why (seed 003 §4.3 "Ephemeral key"): a token has 48 bits and lives 7 days by default. With
the defaults (10 attempts/min per address, 600/min overall) an attacker gets at most
600 * 60 * 24 * 7 ≈ 6.0e6 guesses per token lifetime, i.e. a chance of about 2e-8 per live
token of hitting one -- hopeless. See ``docs/security-auth.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBucket:
    """Buckets of ``burst`` tokens refilled at ``rate_per_s``, one bucket per key.

    At most ``max_keys`` buckets are kept; the least recently used is forgotten first (a
    forgotten key starts again with a full bucket, so the bound trades a little precision for
    bounded memory under address spraying -- the global bucket still caps the total).
    """

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float],
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket. Returns 0 if allowed, else the seconds to wait
        until a token is available (nothing is spent then)."""
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate


class RegistrationLimiter:
    """Per-address and global limits for ``POST /rpc/targets``."""

    def __init__(
        self,
        *,
        per_address_per_min: float,
        burst: int,
        global_per_min: float,
        clock: Callable[[], float],
    ) -> None:
        self._per_address = TokenBucket(
            rate_per_s=per_address_per_min / 60.0, burst=burst, clock=clock
        )
        global_burst = max(burst, math.ceil(global_per_min / 6))
        self._global = TokenBucket(
            rate_per_s=global_per_min / 60.0, burst=global_burst, clock=clock
        )

    def check(self, address: str) -> int:
        """Count one attempt from ``address``. Returns 0 if allowed, else the whole seconds to
        wait (for a ``Retry-After`` header)."""
        wait = self._per_address.take(address)
        if wait == 0.0:
            wait = self._global.take("*")
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
