"""Rate limit of the operator actions on a task (retry, pause, resume, abort, rollback).

Each action is cheap to ask for and may announce to, or create a task for, thousands of
devices; a runaway script must not turn into a flood of announcements. Every operator (by
audit name) has a bucket of :data:`BURST` actions refilled at :data:`PER_MIN` a minute;
over it, the action is refused with 429 and ``Retry-After`` before anything is read or
changed (docs/api.md). A person clicking through a rollout never comes near it.
"""

from __future__ import annotations

import math

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import RateLimited
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.ratelimit import TokenBucket

#: Actions an operator may take at once, and how many more a minute.
BURST = 30
PER_MIN = 60.0


class ActionLimiter:
    """Per-operator token buckets for task actions."""

    def __init__(self, clock: Clock, *, burst: int = BURST, per_min: float = PER_MIN) -> None:
        self._bucket = TokenBucket(
            rate_per_s=per_min / 60.0, burst=burst, clock=lambda: clock() / 1000.0,
            max_keys=10_000,
        )  # fmt: skip

    def check(self, who: Principal, action: str) -> None:
        """Spend one action of ``who``; :class:`RateLimited` when there is none left."""
        wait_s = self._bucket.take(who.audit_name)
        if wait_s > 0:
            raise RateLimited(
                f"too many task actions by {who.audit_name} ({action}); slow down",
                retry_after_s=max(1, math.ceil(wait_s)),
            )
