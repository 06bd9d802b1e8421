"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Counters live in this process (:class:`Metrics`); gauges that describe stored state (targets,
online targets, tasks by status, stored log lines) are computed from storage at scrape time
by :class:`~swarmdeploy.manager.services.stats.StatsService`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
    return "{" + inner + "}"


class Metrics:
    """Process-local counters."""

    def __init__(self) -> None:
        self.logs_ingested = 0
        self.events_dropped = 0
        self.registrations: collections.Counter[str] = collections.Counter()
        self.http_requests: collections.Counter[int] = collections.Counter()
        self.blobs_collected = 0
        self.blob_bytes_freed = 0

    def count_http(self, status: int) -> None:
        """Count one answered HTTP request."""
        self.http_requests[status] += 1

    def count_registration(self, result: str) -> None:
        """Count one registration attempt by result (ok, rejected, conflict, invalid, ...)."""
        self.registrations[result] += 1

    def count_dropped(self, count: int) -> None:
        """Count events dropped for slow subscribers."""
        self.events_dropped += count

    def count_blobs_freed(self, count: int, size_bytes: int) -> None:
        """Count blobs deleted by the garbage collector and the bytes they held."""
        self.blobs_collected += count
        self.blob_bytes_freed += size_bytes


class Exposition:
    """Builder of one exposition document."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        """Add a metric family with its ``# HELP``/``# TYPE`` lines and samples."""
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            number = int(value) if float(value).is_integer() else value
            self._lines.append(f"{name}{_labels(labels)} {number}")

    def render(self) -> str:
        """The document (ends with a newline)."""
        return "\n".join(self._lines) + "\n"


def render_counters(metrics: Metrics, out: Exposition) -> None:
    """Append the process counters to ``out``."""
    out.family(
        "swarmdeploy_logs_ingested_total",
        "counter",
        "Log lines stored since start.",
        [({}, metrics.logs_ingested)],
    )
    out.family(
        "swarmdeploy_registrations_total",
        "counter",
        "Registration attempts by result.",
        [({"result": r}, n) for r, n in sorted(metrics.registrations.items())],
    )
    out.family(
        "swarmdeploy_events_dropped_total",
        "counter",
        "Events dropped because a subscriber read too slowly.",
        [({}, metrics.events_dropped)],
    )
    out.family(
        "swarmdeploy_http_requests_total",
        "counter",
        "HTTP requests answered, by status code.",
        [({"status": str(s)}, n) for s, n in sorted(metrics.http_requests.items())],
    )
    out.family(
        "swarmdeploy_blobs_collected_total",
        "counter",
        "Unreferenced blobs deleted by the garbage collector since start.",
        [({}, metrics.blobs_collected)],
    )
    out.family(
        "swarmdeploy_blob_bytes_freed_total",
        "counter",
        "Bytes of the blobs deleted by the garbage collector since start.",
        [({}, metrics.blob_bytes_freed)],
    )
