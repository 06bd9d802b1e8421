"""Gauges for ``GET /metrics`` computed from storage, cached briefly to bound scrape cost.

Counts come from aggregate queries (``count_targets``, ``count_task_targets_by_state``,
``count_tasks_by_states``: one row per distinct state set, however many tasks). Only the
per-target gauges (online, health) read target records, a page of 1,000 per query.
"""

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

#: Per-target gauges taken from each target's latest health report (wire field names).
HEALTH_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("swarmdeploy_target_disk_free_bytes", "disk_free_bytes", "Free disk space of a target."),
    ("swarmdeploy_target_agent_rss_bytes", "agent_rss_bytes", "Resident memory of its agent."),
    ("swarmdeploy_target_cpu_percent", "cpu_percent", "CPU use of a target, percent."),
)


def health_samples(target_id: str, health: dict[str, object] | None) -> list[Samples]:
    """One sample list per :data:`HEALTH_GAUGES` entry (empty where the report lacks it)."""
    found: list[Samples] = []
    for _, field, _ in HEALTH_GAUGES:
        value = (health or {}).get(field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.append([])
        else:
            found.append([({"target": target_id}, float(value))])
    return found


class StatsService:
    """Renders the Prometheus exposition: stored-state gauges plus process counters; the
    gauges are cached for ``cache_s``."""

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

    async def _per_target(self) -> tuple[int, list[Samples]]:
        """Online targets and the health samples: needs every target's record."""
        online = 0
        health: list[Samples] = [[] for _ in HEALTH_GAUGES]
        page = 1
        while True:
            result = await self._storage.list_targets(page=page, per_page=MAX_PER_PAGE)
            online += sum(1 for r in result.items if self._registry.is_online(r))
            for record in result.items:
                for samples, found in zip(
                    health, health_samples(record.id, record.health), strict=True
                ):
                    samples.extend(found)
            if page * MAX_PER_PAGE >= result.total:
                return online, health
            page += 1

    async def _task_statuses(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for states, tasks in (await self._storage.count_tasks_by_states()).items():
            counts[summarize([TargetState(s) for s in states]).value] += tasks
        return counts

    async def _gauges(self) -> list[Family]:
        stamp, cached = self._cached
        if time.monotonic() - stamp < self._cache_s:
            return cached
        total = await self._storage.count_targets()
        online, health = await self._per_target()
        statuses = await self._task_statuses()
        rows = await self._storage.count_task_targets_by_state()
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
                "swarmdeploy_task_targets",
                "gauge",
                "Per-target task rows by state.",
                [({"state": s.value}, float(rows.get(s.value, 0))) for s in TargetState],
            ),
            (
                "swarmdeploy_log_lines",
                "gauge",
                "Log lines stored.",
                [({}, float(await self._storage.count_logs()))],
            ),
        ]
        for (name, _, help_text), samples in zip(HEALTH_GAUGES, health, strict=True):
            gauges.append((name, "gauge", help_text, samples))
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
