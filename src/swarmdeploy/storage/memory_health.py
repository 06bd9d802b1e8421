"""Health history of the in-memory storage (no awaits: every call is atomic with respect to
other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

from typing import Any

from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import HealthSample


class MemoryHealth:
    """The health-history methods of ``MemoryStorage`` (a mixin); samples of a deleted
    target go with it (``forget_health``), as the SQL foreign key does."""

    _state: StorageState
    _targets: dict[str, Any]
    _health: dict[str, dict[int, HealthSample]]

    async def add_health_sample(self, sample: HealthSample) -> None:
        """Store it unless a duplicate or the target is unknown."""
        require_open(self._state)
        if sample.target_id in self._targets:
            self._health.setdefault(sample.target_id, {}).setdefault(sample.at_ms, sample)

    async def health_samples(self, target_id: str, *, since: int, limit: int) -> list[HealthSample]:
        """The target's samples with ``at_ms >= since``, oldest first, the newest ``limit``."""
        require_open(self._state)
        found = sorted(
            (s for t, s in self._health.get(target_id, {}).items() if t >= since),
            key=lambda s: s.at_ms,
        )
        return found[-limit:] if limit > 0 else []

    async def purge_health_samples(self, *, older_than: int) -> int:
        """Delete samples older than ``older_than``; returns how many."""
        require_open(self._state)
        deleted = 0
        for samples in self._health.values():
            old = [t for t in samples if t < older_than]
            for t in old:
                del samples[t]
            deleted += len(old)
        return deleted

    def forget_health(self, target_id: str) -> None:
        """Drop a deleted target's samples."""
        self._health.pop(target_id, None)
