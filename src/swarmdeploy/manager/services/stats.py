"""Gauges for ``GET /metrics`` computed from storage, cached briefly to bound scrape cost."""

from __future__ import annotations

import collections
import time

from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.metrics import Exposition, Metrics, render_counters
from swarmdeploy.manager.services.registry import TargetRegistry
from swarmdeploy.protocol.states import TargetState, TaskStatus, summarize
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import MAX_PER_PAGE

Samples = list[tuple[dict[str, str], float]]
Family = tuple[str, str, str, Samples]


class StatsService:
    """Renders the Prometheus exposition: stored-state gauges plus process counters.

    Counting online targets and task statuses walks every target and task page by page (the
    storage interface has no aggregate queries); the result is cached for ``cache_s``.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        registry: TargetRegistry,
        metrics: Metrics,
        events: EventHub,
        cache_s: float = 15.0,
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._metrics = metrics
        self._events = events
        self._cache_s = cache_s
        self._cached: tuple[float, list[Family]] = (float("-inf"), [])

    async def _targets(self) -> tuple[int, int]:
        total = online = 0
        page = 1
        while True:
            result = await self._storage.list_targets(page=page, per_page=MAX_PER_PAGE)
            total = result.total
            online += sum(1 for r in result.items if self._registry.is_online(r))
            if page * MAX_PER_PAGE >= result.total:
                return total, online
            page += 1

    async def _task_statuses(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        page = 1
        while True:
            result = await self._storage.list_tasks(page=page, per_page=MAX_PER_PAGE)
            for task in result.items:
                rows = await self._storage.task_targets(task.id)
                counts[summarize([TargetState(r.state) for r in rows]).value] += 1
            if page * MAX_PER_PAGE >= result.total:
                return counts
            page += 1

    async def _gauges(self) -> list[Family]:
        stamp, cached = self._cached
        if time.monotonic() - stamp < self._cache_s:
            return cached
        total, online = await self._targets()
        statuses = await self._task_statuses()
        gauges: list[Family] = [
            ("swarmdeploy_targets", "gauge", "Registered targets.", [({}, float(total))]),
            (
                "swarmdeploy_targets_online",
                "gauge",
                "Targets heard from within the online timeout.",
                [({}, float(online))],
            ),
            (
                "swarmdeploy_tasks",
                "gauge",
                "Tasks by summary status.",
                [({"status": s.value}, float(statuses[s.value])) for s in TaskStatus],
            ),
            (
                "swarmdeploy_log_lines",
                "gauge",
                "Log lines stored.",
                [({}, float(await self._storage.count_logs()))],
            ),
        ]
        self._cached = (time.monotonic(), gauges)
        return gauges

    async def exposition(self) -> str:
        """The whole metrics document."""
        out = Exposition()
        for name, kind, help_text, samples in await self._gauges():
            out.family(name, kind, help_text, samples)
        out.family(
            "swarmdeploy_event_subscribers",
            "gauge",
            "Open /events subscriptions.",
            [({}, float(self._events.subscriber_count))],
        )
        render_counters(self._metrics, out)
        return out.render()
