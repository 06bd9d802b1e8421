"""Gauges for ``GET /metrics`` computed from storage, cached briefly to bound scrape cost.

Counts come from aggregate queries (``count_targets``, ``count_task_targets_by_state``,
``count_tasks_by_states``: one row per distinct state set, however many tasks). The fleet
health gauges and the online count read target records, a page of 1,000 per query; the blob
store's size lists its blobs. Per-target values are aggregated (minimum free disk, largest
agent RSS, highest CPU) or counted (targets whose latest connectivity report fails a check,
seed 000): a target id is never a label (docs/metrics.md), the API and the GUI show each
target's own numbers.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.registry import TargetRegistry
from swarmdeploy.protocol.states import TargetState, TaskStatus, summarize
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import MAX_PER_PAGE

#: Fleet health gauges from each target's latest health report: (name, wire field, fold, help).
HEALTH_GAUGES: tuple[tuple[str, str, Callable[[float, float], float], str], ...] = (
    ("swarmdeploy_targets_disk_free_bytes_min", "disk_free_bytes", min,
     "Least free disk space of any target that reported it."),
    ("swarmdeploy_targets_agent_rss_bytes_max", "agent_rss_bytes", max,
     "Largest resident memory of any target's agent."),
    ("swarmdeploy_targets_cpu_percent_max", "cpu_percent", max,
     "Highest CPU use of any target, percent."),
)  # fmt: skip


#: The connectivity checks an agent reports (``health.__extra__.connectivity``,
#: docs/protocol.md §10): the values of the ``check`` label.
CONNECTIVITY_CHECKS = ("link", "dns", "hosts", "manager")


def connectivity_failures(health: dict[str, object] | None) -> frozenset[str] | None:
    """The checks the latest connectivity result in ``health`` fails (DNS not checked, with a
    proxy, is not a failure), or ``None`` when the report has no connectivity result."""
    extra = (health or {}).get("__extra__")
    found = extra.get("connectivity") if isinstance(extra, dict) else None
    if not isinstance(found, dict):
        return None
    hosts = found.get("hosts")
    failing = {
        "link": found.get("link_up") is False,
        "dns": found.get("dns") is False,
        "hosts": isinstance(hosts, dict) and any(ok is False for ok in hosts.values()),
        "manager": found.get("manager") is False,
    }
    return frozenset(check for check, failed in failing.items() if failed)


def health_value(health: dict[str, object] | None, field: str) -> float | None:
    """The numeric ``field`` of a health report, or ``None``."""
    value = (health or {}).get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class StatsService:
    """Sets the stored-state gauges of ``metrics`` (cached for ``cache_s``) and renders the
    exposition."""

    def __init__(
        self,
        storage: Storage,
        *,
        registry: TargetRegistry,
        metrics: Metrics,
        events: EventHub,
        blobs: BlobStore | None = None,
        cache_s: float = 15.0,
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._metrics = metrics
        self._events = events
        self._blobs = blobs
        self._cache_s = cache_s
        self._stamp = float("-inf")
        g = metrics.gauge
        self._targets = g("swarmdeploy_targets", "Registered targets.")
        self._online = g("swarmdeploy_targets_online", "Targets heard from within the timeout.")
        self._tasks = g("swarmdeploy_tasks", "Tasks (deployments) by summary status.", ("status",))
        self._rows = g("swarmdeploy_task_targets", "Per-target task rows by state.", ("state",))
        self._log_lines = g("swarmdeploy_log_lines", "Log lines stored.")
        self._blob_bytes = g("swarmdeploy_blob_store_bytes", "Bytes held by the blob store.")
        self._subscribers = g("swarmdeploy_event_subscribers", "Open /events subscriptions.")
        self._health = [g(name, text) for name, _, _, text in HEALTH_GAUGES]
        self._conn_reported = g(
            "swarmdeploy_targets_connectivity_reported",
            "Targets whose latest health report has a connectivity result.",
        )
        self._conn_failing = g(
            "swarmdeploy_targets_connectivity_failing",
            "Targets whose latest connectivity result fails this check.",
            ("check",),
        )

    async def _per_target(self) -> None:
        """Online targets and the fleet health gauges: needs every target's record."""
        online = reported = 0
        failing: collections.Counter[str] = collections.Counter()
        folded: list[float | None] = [None for _ in HEALTH_GAUGES]
        page = 1
        while True:
            result = await self._storage.list_targets(page=page, per_page=MAX_PER_PAGE)
            online += sum(1 for r in result.items if self._registry.is_online(r))
            for record in result.items:
                for i, (_, field, fold, _) in enumerate(HEALTH_GAUGES):
                    value = health_value(record.health, field)
                    if value is not None:
                        seen = folded[i]
                        folded[i] = value if seen is None else fold(seen, value)
                checks = connectivity_failures(record.health)
                if checks is not None:
                    reported += 1
                    failing.update(checks)
            if page * MAX_PER_PAGE >= result.total:
                break
            page += 1
        self._online.set(online)
        for gauge, value in zip(self._health, folded, strict=True):
            gauge.set(math.nan if value is None else value)
        self._conn_reported.set(reported)
        for check in CONNECTIVITY_CHECKS:
            self._conn_failing.labels(check).set(failing[check])

    async def _task_statuses(self) -> None:
        counts: collections.Counter[str] = collections.Counter()
        for states, tasks in (await self._storage.count_tasks_by_states()).items():
            counts[summarize([TargetState(s) for s in states]).value] += tasks
        for status in TaskStatus:
            self._tasks.labels(status.value).set(counts[status.value])
        rows = await self._storage.count_task_targets_by_state()
        for state in TargetState:
            self._rows.labels(state.value).set(rows.get(state.value, 0))

    async def refresh(self) -> None:
        """Set the stored-state gauges unless they were set less than ``cache_s`` ago."""
        self._subscribers.set(self._events.subscriber_count)
        if time.monotonic() - self._stamp < self._cache_s:
            return
        self._targets.set(await self._storage.count_targets())
        await self._per_target()
        await self._task_statuses()
        self._log_lines.set(await self._storage.count_logs())
        if self._blobs is not None:
            self._blob_bytes.set(sum(b.size_bytes for b in await self._blobs.list_blobs()))
        self._stamp = time.monotonic()

    async def exposition(self) -> str:
        """The whole metrics document (Prometheus text format 0.0.4)."""
        await self.refresh()
        return self._metrics.render().decode()
