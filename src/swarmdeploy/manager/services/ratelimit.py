"""Rate limiting of registration attempts: per client address, and globally per *failure*.

Why (seed 003 §4.3 "Ephemeral key"): a token has 48 bits and lives 7 days by default.

* Every attempt spends a token of its address's bucket (default 10/min, burst 10), before
  anything is checked.
* Wrong tokens also spend a token of one global bucket (default 600/min). While that bucket
  is empty the manager is *under attack*: an address that sent a wrong token within the last
  ``quiet_s`` (10 min) is refused outright (429), but an address without a recent failure is
  still checked -- so a device enrolling from a new address gets through, and an attacker
  is not able to lock enrolment out (issue 9, item 6: 60 addresses x 10 wrong guesses used
  to make every registration a 429).

Guesses are therefore bounded by 600/min in normal times and by one per address per
``quiet_s`` under attack: with 10,000 addresses ≈ 1,000/min, 1.0e7 over a token's 7 days,
a chance of 4e-7 per live token (2^48 ≈ 2.8e14). See ``docs/security-auth.md``.
IPv6 clients are keyed by their /64 (one host usually holds a whole /64).
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
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


def client_key(address: str) -> str:
    """The rate-limit key of a client address: IPv6 addresses by their /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RegistrationLimiter:
    """Per-address attempt limits and a global failure limit for ``POST /rpc/targets``."""

    def __init__(
        self,
        *,
        per_address_per_min: float,
        burst: int,
        global_per_min: float,
        clock: Callable[[], float],
        quiet_s: float = 600.0,
        max_keys: int = 100_000,
    ) -> None:
        self._clock = clock
        self._per_address = TokenBucket(
            rate_per_s=per_address_per_min / 60.0, burst=burst, clock=clock, max_keys=max_keys
        )
        global_burst = max(burst, math.ceil(global_per_min / 6))
        self._failures = TokenBucket(
            rate_per_s=global_per_min / 60.0, burst=global_burst, clock=clock
        )
        self._quiet_s = quiet_s
        self._max_keys = max_keys
        self._last_failure: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._under_attack_until = 0.0

    @property
    def under_attack(self) -> bool:
        """Whether the global failure budget ran out within the last ``quiet_s``."""
        return self._clock() < self._under_attack_until

    def check(self, address: str) -> int:
        """Count one attempt from ``address``. Returns 0 if it may be checked, else the whole
        seconds to wait (for a ``Retry-After`` header)."""
        key = client_key(address)
        wait = self._per_address.take(key)
        if wait == 0.0 and self.under_attack:
            last = self._last_failure.get(key)
            if last is not None and self._clock() - last < self._quiet_s:
                wait = self._quiet_s - (self._clock() - last)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))

    def failed(self, address: str) -> None:
        """Record a wrong token from ``address`` (after it was checked)."""
        key = client_key(address)
        now = self._clock()
        self._last_failure.pop(key, None)
        self._last_failure[key] = now
        while len(self._last_failure) > self._max_keys:
            self._last_failure.popitem(last=False)
        if self._failures.take("*") > 0.0:
            self._under_attack_until = now + self._quiet_s
