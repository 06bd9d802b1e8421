"""What an SRE scrapes and ships: ``/metrics`` after a real deployment (parsed with
``prometheus_client``'s own parser) and ``--log-format json`` lines of real processes."""

from __future__ import annotations

import json
import pathlib

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from swarmdeploy.localfleet import LocalFleet
from swarmdeploy.manager.services.metrics import LABEL_NAMES, UNMATCHED_ROUTE
from tests.e2e.conftest import FAST_AGENT, zip_b64

pytestmark = pytest.mark.e2e

AGENTS = ("obs-a1", "obs-a2")
#: Families a scrape after a deployment must show, with their type.
EXPECTED = {
    "swarmdeploy_http_request_duration_seconds": "histogram",
    "swarmdeploy_storage_operation_duration_seconds": "histogram",
    "swarmdeploy_storage_unavailable": "counter",
    "swarmdeploy_link_messages_received": "counter",
    "swarmdeploy_link_messages_sent": "counter",
    "swarmdeploy_link_requests_resent": "counter",
    "swarmdeploy_link_queued_jobs": "gauge",
    "swarmdeploy_link_oldest_queued_age_seconds": "gauge",
    "swarmdeploy_log_lines_ingested": "counter",
    "swarmdeploy_log_lines_dropped": "counter",
    "swarmdeploy_event_subscribers": "gauge",
    "swarmdeploy_events_dropped": "counter",
    "swarmdeploy_registrations": "counter",
    "swarmdeploy_tasks": "gauge",
    "swarmdeploy_task_targets": "gauge",
    "swarmdeploy_blob_store_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
}


def _value(found: dict[str, Metric], sample: str, **labels: str) -> float:
    family = found[sample.removesuffix("_total").removesuffix("_count")]
    values = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert values, f"no sample {sample}{labels}"
    return float(values[0])


def _json_lines(path: pathlib.Path) -> list[dict[str, str]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, f"{path.name} is empty"
    docs = []
    for line in lines:
        doc = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= doc.keys(), line
        docs.append(doc)
    return docs


def test_metrics_after_a_deployment_and_json_logs(tmp_path: pathlib.Path) -> None:
    json_logs = ["--log-format", "json"]
    with LocalFleet(
        tmp_path, manager_args=[*json_logs, "--no-gui"], agent_args=[*FAST_AGENT, *json_logs]
    ) as fleet:
        fleet.start_manager()
        for agent_id, token in zip(AGENTS, fleet.tokens("obs", len(AGENTS)), strict=True):
            fleet.start_agent(agent_id, token=token)
        fleet.wait_online(list(AGENTS))
        doc = {
            "source": {"zip": zip_b64({"hi.sh": "echo hi\n"})},
            "deploy": {"run": {"commands": ["sh hi.sh"]}, "target": {"ids": list(AGENTS)}},
        }
        task = str(fleet.api.request("POST", "/tasks", json=doc)["id"])
        fleet.wait_states(task, dict.fromkeys(AGENTS, "exited"))
        headers = {"Authorization": f"Bearer {fleet.admin_key}"}
        text = httpx.get(f"{fleet.url}/metrics", headers=headers, timeout=10).text

    found = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in EXPECTED.items():
        assert name in found and found[name].type == kind, name
    assert _value(found, "swarmdeploy_task_targets", state="exited") == 2
    assert _value(found, "swarmdeploy_registrations_total", result="ok") == 2
    assert _value(found, "swarmdeploy_link_messages_sent_total", type="announce") >= 2
    assert _value(found, "swarmdeploy_link_messages_received_total", type="state") >= 2
    assert _value(found, "swarmdeploy_link_messages_sent_total", type="state_ack") >= 2
    assert _value(found, "swarmdeploy_blob_store_bytes") > 0
    assert _value(found, "swarmdeploy_link_wire_bytes_total", direction="in") > 0
    assert _value(found, "swarmdeploy_link_wire_bytes_total", direction="out") > 0
    tasks_route = {"method": "POST", "route": "/tasks", "status_class": "2xx"}
    assert _value(found, "swarmdeploy_http_request_duration_seconds_count", **tasks_route) == 1
    assert _value(found, "process_resident_memory_bytes") > 0

    # bounded label sets: known names only, never a target or task id, routes are templates
    for name, family in found.items():
        if not name.startswith("swarmdeploy_"):
            continue
        for s in family.samples:
            assert set(s.labels) - {"le"} <= LABEL_NAMES, (name, s.labels)
            for value in s.labels.values():
                assert value not in (*AGENTS, task), (name, s.labels)
            route = s.labels.get("route")
            assert route is None or route == UNMATCHED_ROUTE or route.startswith("/"), route

    manager = _json_lines(tmp_path / "manager.log")
    assert any(d.get("task") == task and d.get("target") in AGENTS for d in manager)
    agent = _json_lines(tmp_path / f"agent-{AGENTS[0]}.log")
    assert any(d.get("task") == task and "exited" in d["message"] for d in agent)
