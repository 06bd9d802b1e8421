"""The manager's Prometheus metrics, kept by ``prometheus_client`` (docs/metrics.md).

:class:`Metrics` owns one :class:`~prometheus_client.CollectorRegistry` per manager app (tests
build many apps in one process; a global registry would mix them) and exposes one narrow
method per thing counted, so call sites never touch a metric object. Gauges that describe
stored state are set at scrape time by
:class:`~swarmdeploy.manager.services.stats.StatsService`.

Label sets are bounded by construction: every label value comes from code (a route template,
a status class, a wire message type of this protocol version, a storage operation name, a
result or reason chosen by the caller), never from a target id, task id, path or anything an
agent or a client chooses. :func:`bounded` squashes anything outside a known set to
``other``; ``tests/manager/services/test_metrics.py`` fails if a family gains a label that
is not in :data:`LABEL_NAMES`.

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set in the environment before the
manager starts, ``prometheus_client`` keeps the values in memory-mapped files of that
directory and :meth:`Metrics.render` aggregates every process's files. Gauges declare how
they aggregate (``multiprocess_mode``); process metrics then describe the serving process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from swarmdeploy.protocol.messages import MESSAGE_TYPES
from swarmdeploy.transport.base import WireStats

#: Every label name a swarmdeploy family may carry; each has a small, code-defined value set.
LABEL_NAMES = frozenset(
    {
        "method",
        "route",
        "status_class",
        "type",
        "result",
        "reason",
        "state",
        "status",
        "operation",
        "direction",
        "check",
    }
)
#: ``route`` of a request that matched no route (its path is not a label: unbounded).
UNMATCHED_ROUTE = "<unmatched>"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Request latency buckets, seconds: API calls are milliseconds, uploads take seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Storage call latency buckets, seconds (SQLite on a Pi to PostgreSQL over a network).
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def bounded(value: str, allowed: Collection[str]) -> str:
    """``value`` if it is in ``allowed``, else ``"other"`` (keeps a label set finite)."""
    return value if value in allowed else "other"


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299 and so on; ``"other"`` outside 100..599."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class Metrics:
    """The metric families of one manager (see the module docstring)."""

    def __init__(self, *, process: bool = True) -> None:
        # No ``*_created`` series next to every counter: process start time says the same.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._message_types = frozenset(MESSAGE_TYPES)
        self._children: dict[tuple[int, str], Counter] = {}
        self._probes: list[Callable[[], None]] = []
        r = self.registry
        self.http_duration = Histogram(
            "swarmdeploy_http_request_duration_seconds",
            "HTTP request latency by method, route template and status class.",
            ["method", "route", "status_class"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.link_received = Counter(
            "swarmdeploy_link_messages_received",
            "Agent link messages received, by wire type (unknown types: other).",
            ["type"],
            registry=r,
        )
        self.link_sent = Counter(
            "swarmdeploy_link_messages_sent",
            "Agent link messages handed to a connected agent, by wire type "
            "(state_ack, log_ack and upload_ack are the acknowledgements).",
            ["type"],
            registry=r,
        )
        self.link_unsent = Counter(
            "swarmdeploy_link_messages_unsent",
            "Agent link messages not sent because the agent was not connected, by wire type.",
            ["type"],
            registry=r,
        )
        self.link_wire_bytes = Counter(
            "swarmdeploy_link_wire_bytes",
            "Bytes of agent link messages on the wire (before CURVE), by direction (in: from"
            " agents); compressed envelopes count with their compressed size.",
            ["direction"],
            registry=r,
        )
        self.link_wire_compressed = Counter(
            "swarmdeploy_link_wire_compressed_messages",
            "Agent link messages that went as compressed envelopes, by direction.",
            ["direction"],
            registry=r,
        )
        self._wire_seen = (0, 0, 0, 0)
        self.link_resent = Counter(
            "swarmdeploy_link_requests_resent",
            "Requests sent again to an agent that said hello before acknowledging them.",
            registry=r,
        )
        self.link_merged = Counter(
            "swarmdeploy_link_duplicates_merged",
            "Agent re-sends answered once (merged into the waiting or running original, or"
            " dropped just after a late answer).",
            registry=r,
        )
        self.link_refused = Counter(
            "swarmdeploy_link_jobs_refused",
            "Agent messages refused because the target's work queue was full.",
            registry=r,
        )
        self.http_link_refused = Counter(
            "swarmdeploy_http_link_requests_refused",
            "Requests to the HTTP agent link refused, by code (replayed, bad_signature, "
            "unknown_key, busy, ...; docs/protocol.md §10).",
            ["code"],
            registry=r,
        )
        self.http_link_agents = Gauge(
            "swarmdeploy_http_link_agents",
            "Agents with a live HTTP link session (polled within the session TTL).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.link_queued = Gauge(
            "swarmdeploy_link_queued_jobs",
            "Jobs (mostly agent reports awaiting handling and acknowledgement) queued, all "
            "targets.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.link_queue_max = Gauge(
            "swarmdeploy_link_queue_depth_max",
            "Deepest per-target work queue.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.link_oldest = Gauge(
            "swarmdeploy_link_oldest_queued_age_seconds",
            "Age of the oldest agent message still waiting to be handled and acknowledged.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.storage_duration = Histogram(
            "swarmdeploy_storage_operation_duration_seconds",
            "Storage call (one transaction) latency by operation.",
            ["operation"],
            buckets=STORAGE_BUCKETS,
            registry=r,
        )
        self.storage_unavailable = Counter(
            "swarmdeploy_storage_unavailable",
            "Storage calls that failed with StorageUnavailable (database down or overloaded).",
            ["operation"],
            registry=r,
        )
        self.logs_ingested_total = Counter(
            "swarmdeploy_log_lines_ingested", "Log lines stored since start.", registry=r
        )
        self.logs_dropped = Counter(
            "swarmdeploy_log_lines_dropped",
            "Log lines not kept: duplicate (already stored, e.g. an agent re-send) or "
            "retention (deleted by age or row limit).",
            ["reason"],
            registry=r,
        )
        self.events_dropped_total = Counter(
            "swarmdeploy_events_dropped",
            "Events dropped because a subscriber read too slowly.",
            registry=r,
        )
        self.registrations = Counter(
            "swarmdeploy_registrations",
            "Registration attempts by result (ok, or the reason of the refusal).",
            ["result"],
            registry=r,
        )
        self.blobs_collected_total = Counter(
            "swarmdeploy_blobs_collected",
            "Unreferenced blobs deleted by the garbage collector.",
            registry=r,
        )
        self.blob_bytes_freed_total = Counter(
            "swarmdeploy_blob_freed_bytes",
            "Bytes of the blobs deleted by the garbage collector.",
            registry=r,
        )
        for reason in ("duplicate", "retention"):  # known series start at 0 (rate() works)
            self.logs_dropped.labels(reason)
        self.registrations.labels("ok")
        if process and not os.environ.get(MULTIPROC_ENV):
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    # -- call sites ----------------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request; ``route`` is the matched template or
        :data:`UNMATCHED_ROUTE`."""
        labels = (bounded(method, HTTP_METHODS), route, status_class(status))
        self.http_duration.labels(*labels).observe(seconds)

    def message_type(self, wire_type: str) -> str:
        """The ``type`` label of a wire type: itself if this protocol version knows it."""
        return bounded(wire_type, self._message_types)

    def count_received(self, wire_type: str) -> None:
        """One agent message received."""
        self._child(self.link_received, wire_type).inc()

    def count_sent(self, wire_type: str, *, delivered: bool) -> None:
        """One message to an agent, handed to its connection or not."""
        self._child(self.link_sent if delivered else self.link_unsent, wire_type).inc()

    def _child(self, family: Counter, wire_type: str) -> Counter:
        """The family's counter of ``wire_type``, looked up once (every agent message
        counts: ``labels()`` takes a lock and builds a key each time)."""
        label = self.message_type(wire_type)  # bounded: an agent picks the unknown ones
        key = (id(family), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(label)
        return child

    def observe_wire(self, stats: WireStats) -> None:
        """Bring the wire counters up to the transport's own (a probe before rendering)."""
        now = (
            stats.received_bytes,
            stats.sent_bytes,
            stats.received_compressed,
            stats.sent_compressed,
        )
        seen, self._wire_seen = self._wire_seen, now
        for direction, new, old in (("in", now[0], seen[0]), ("out", now[1], seen[1])):
            self.link_wire_bytes.labels(direction).inc(max(0, new - old))
        for direction, new, old in (("in", now[2], seen[2]), ("out", now[3], seen[3])):
            self.link_wire_compressed.labels(direction).inc(max(0, new - old))

    def count_registration(self, result: str) -> None:
        """Count one registration attempt by result (ok, rejected, conflict, ...: code-chosen)."""
        self.registrations.labels(result).inc()

    def count_dropped(self, count: int) -> None:
        """Count events dropped for slow subscribers."""
        self.events_dropped_total.inc(count)

    def count_logs(self, *, stored: int, duplicates: int) -> None:
        """Count log lines stored and lines skipped as already stored."""
        self.logs_ingested_total.inc(stored)
        if duplicates:
            self.logs_dropped.labels("duplicate").inc(duplicates)

    def count_logs_expired(self, count: int) -> None:
        """Count log lines deleted by retention."""
        self.logs_dropped.labels("retention").inc(count)

    def count_blobs_freed(self, count: int, size_bytes: int) -> None:
        """Count blobs deleted by the garbage collector and the bytes they held."""
        self.blobs_collected_total.inc(count)
        self.blob_bytes_freed_total.inc(size_bytes)

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A gauge set at scrape time (stored-state gauges of the stats service)."""
        return Gauge(
            name, help_text, labels, registry=self.registry, multiprocess_mode="mostrecent"
        )

    def add_probe(self, probe: Callable[[], None]) -> None:
        """Call ``probe`` before each rendering (it sets gauges of in-memory state)."""
        self._probes.append(probe)

    def remove_probe(self, probe: Callable[[], None]) -> None:
        """Stop calling ``probe``; absent is fine."""
        if probe in self._probes:
            self._probes.remove(probe)

    # -- reading -------------------------------------------------------------------------------
    @property
    def logs_ingested(self) -> int:
        """Log lines stored since start."""
        return int(self.value("swarmdeploy_log_lines_ingested_total"))

    @property
    def events_dropped(self) -> int:
        """Events dropped for slow subscribers since start."""
        return int(self.value("swarmdeploy_events_dropped_total"))

    @property
    def blobs_collected(self) -> int:
        """Blobs deleted by the garbage collector since start."""
        return int(self.value("swarmdeploy_blobs_collected_total"))

    @property
    def blob_bytes_freed(self) -> int:
        """Bytes freed by the garbage collector since start."""
        return int(self.value("swarmdeploy_blob_freed_bytes_total"))

    def value(self, name: str, **labels: str) -> float:
        """The current value of one sample (0 when absent): for tests and the stats page."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        """The exposition document (text format 0.0.4); in multiprocess mode the aggregate
        of every process's files."""
        for probe in self._probes:
            probe()
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
