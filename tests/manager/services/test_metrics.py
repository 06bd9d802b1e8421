"""The manager's metric families: bounded labels and the counters behind the call sites."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from swarmdeploy.manager.services.metrics import (
    LABEL_NAMES,
    UNMATCHED_ROUTE,
    Metrics,
    bounded,
    status_class,
)
from tests.manager.scrape import families, sample


def test_status_class_and_bounded_values() -> None:
    assert [status_class(s) for s in (200, 204, 404, 503, 42)] == [
        "2xx", "2xx", "4xx", "5xx", "other",
    ]  # fmt: skip
    assert bounded("GET", {"GET"}) == "GET" and bounded("BREW", {"GET"}) == "other"


def test_unknown_wire_type_and_method_are_squashed() -> None:
    metrics = Metrics()
    metrics.count_received("state")
    metrics.count_received("made-up-by-an-agent-1234")
    metrics.observe_request("BREW", UNMATCHED_ROUTE, 418, 0.01)
    text = metrics.render().decode()
    assert sample(text, "swarmdeploy_link_messages_received_total", type="state") == 1
    assert sample(text, "swarmdeploy_link_messages_received_total", type="other") == 1
    assert "made-up" not in text
    labels = {"method": "other", "route": UNMATCHED_ROUTE, "status_class": "4xx"}
    assert sample(text, "swarmdeploy_http_request_duration_seconds_count", **labels) == 1


def test_counters_behind_the_call_sites() -> None:
    metrics = Metrics()
    metrics.count_registration("ok")
    metrics.count_dropped(3)
    metrics.count_logs(stored=5, duplicates=2)
    metrics.count_logs_expired(4)
    metrics.count_blobs_freed(1, 100)
    text = metrics.render().decode()
    assert sample(text, "swarmdeploy_registrations_total", result="ok") == 1
    assert sample(text, "swarmdeploy_events_dropped_total") == 3
    assert sample(text, "swarmdeploy_log_lines_ingested_total") == 5
    assert sample(text, "swarmdeploy_log_lines_dropped_total", reason="duplicate") == 2
    assert sample(text, "swarmdeploy_log_lines_dropped_total", reason="retention") == 4
    assert (metrics.logs_ingested, metrics.events_dropped) == (5, 3)
    assert (metrics.blobs_collected, metrics.blob_bytes_freed) == (1, 100)


def test_every_family_uses_only_bounded_label_names() -> None:
    metrics = Metrics()
    metrics.gauge("swarmdeploy_x", "A gauge of the stats service.", ("state",))
    found = families(metrics.render().decode())
    assert "process_resident_memory_bytes" in found and "python_info" in found
    ours = [f for name, f in found.items() if name.startswith("swarmdeploy_")]
    assert len(ours) >= 15
    for family in ours:
        for s in family.samples:
            names = set(s.labels) - {"le"}
            assert names <= LABEL_NAMES, (family.name, names - LABEL_NAMES)


MULTIPROCESS_CHILD = """
import sys
from swarmdeploy.manager.services.metrics import Metrics
metrics = Metrics()
metrics.count_registration("ok")
metrics.count_received("state")
metrics.observe_request("GET", "/targets", 200, 0.01)
if sys.argv[1] == "render":
    sys.stdout.write(metrics.render().decode())
"""


def test_multiprocess_mode_sums_every_process(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = [sys.executable, "-c", MULTIPROCESS_CHILD]
    subprocess.run([*run, "count"], env=env, check=True, timeout=60)
    text = subprocess.run(
        [*run, "render"], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert sample(text, "swarmdeploy_registrations_total", result="ok") == 2
    assert sample(text, "swarmdeploy_link_messages_received_total", type="state") == 2
    labels = {"method": "GET", "route": "/targets", "status_class": "2xx"}
    assert sample(text, "swarmdeploy_http_request_duration_seconds_count", **labels) == 2
