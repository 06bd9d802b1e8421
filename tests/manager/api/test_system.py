"""``/health``, ``/metrics``, and the error format for unknown routes, 405 and 500."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from swarmdeploy.protocol.selector import Selector
from swarmdeploy.storage.errors import StorageUnavailable
from swarmdeploy.storage.records import Page, TargetRecord
from swarmdeploy.storage.sqlite import ScratchSqliteStorage
from tests.manager.conftest import Api, make_settings, running_api
from tests.manager.scrape import families, sample


class BrokenStorage(ScratchSqliteStorage):
    """A storage whose target listing has a bug and whose database is down for pings."""

    async def list_targets(
        self,
        *,
        tags: Sequence[str] = (),
        search: str | None = None,
        page: int = 1,
        per_page: int = 100,
        selector: Selector | None = None,
    ) -> Page[TargetRecord]:
        raise RuntimeError("secret internal detail /etc/passwd")

    async def ping(self) -> None:
        raise StorageUnavailable("database down")


async def test_health_is_public(api: Api) -> None:
    r = await api.client.get("/health", headers={"Authorization": ""})
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_metrics_need_auth_and_report_counts(api: Api) -> None:
    assert (await api.client.get("/metrics", headers={"Authorization": ""})).status_code == 401
    await api.register("m1")
    await api.client.get("/targets/none")
    viewer = await api.headers_for("viewer")
    r = await api.client.get("/metrics", headers=viewer)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = {"method": "GET", "route": "/targets/{target_id}", "status_class": "4xx"}
    for name, labels, value in (
        ("swarmdeploy_targets", {}, 1),
        ("swarmdeploy_targets_online", {}, 0),
        ("swarmdeploy_tasks", {"status": "pending"}, 0),
        ("swarmdeploy_registrations_total", {"result": "ok"}, 1),
        ("swarmdeploy_http_request_duration_seconds_count", route, 1),
        ("swarmdeploy_events_dropped_total", {}, 0),
        ("swarmdeploy_log_lines_ingested_total", {}, 0),
    ):
        assert sample(text, name, **labels) == value, (name, labels)
    assert families(text)["swarmdeploy_http_request_duration_seconds"].type == "histogram"
    assert (sample(text, "process_resident_memory_bytes") or 0) > 0


async def test_unmatched_path_is_not_a_label(api: Api) -> None:
    for i in range(3):
        await api.client.get(f"/no/such/path/{i}")
    text = (await api.client.get("/metrics")).text
    counted = {"method": "GET", "route": "<unmatched>", "status_class": "4xx"}
    assert sample(text, "swarmdeploy_http_request_duration_seconds_count", **counted) == 3
    assert "/no/such/path" not in text


async def test_unknown_route_is_json_404(api: Api) -> None:
    r = await api.client.get("/no/such/thing")
    assert r.status_code == 404
    assert r.json() == {"error": "no such endpoint: GET /no/such/thing", "code": "not_found"}


async def test_wrong_method_is_json_405(api: Api) -> None:
    r = await api.client.delete("/logs")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


async def test_unexpected_error_is_json_500_without_details(tmp_path: Path) -> None:
    async with running_api(make_settings(tmp_path), storage=BrokenStorage()) as api:
        r = await api.client.get("/targets")
        assert r.status_code == 500
        assert r.json() == {"error": "internal server error", "code": "internal_error"}
        assert "passwd" not in r.text
        health = await api.client.get("/health")
        assert health.status_code == 503 and health.json()["storage"] == "unavailable"


async def test_storage_outage_is_503_with_retry_after(tmp_path: Path) -> None:
    class Down(ScratchSqliteStorage):
        async def get_target(self, target_id: str) -> TargetRecord | None:
            raise StorageUnavailable("connection refused")

    async with running_api(make_settings(tmp_path), storage=Down()) as api:
        r = await api.client.get("/targets/x")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["code"] == "unavailable"
