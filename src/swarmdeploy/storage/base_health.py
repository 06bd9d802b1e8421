"""Health history.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_health.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc

from swarmdeploy.storage.records import (
    HealthSample,
)


class HealthStore(abc.ABC):
    """Health history of targets."""

    @abc.abstractmethod
    async def add_health_sample(self, sample: HealthSample) -> None:
        """Store one sample; a duplicate (target, ``at_ms``) or an unknown target is
        ignored."""

    @abc.abstractmethod
    async def health_samples(self, target_id: str, *, since: int, limit: int) -> list[HealthSample]:
        """The target's samples with ``at_ms >= since``, oldest first; at most ``limit`` (the
        newest ones when there are more)."""

    @abc.abstractmethod
    async def purge_health_samples(self, *, older_than: int) -> int:
        """Delete samples older than ``older_than`` (ms); returns how many."""
