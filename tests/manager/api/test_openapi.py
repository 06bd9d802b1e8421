"""The OpenAPI document: complete, and the app conforms to it (schemathesis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from swarmdeploy.manager.app import create_app
from tests.manager.conftest import ADMIN_KEY, Api, bearer, make_settings

EXPECTED = {
    ("post", "/tasks/preview"), ("post", "/orders/preview"),
    ("get", "/tasks"), ("post", "/tasks"), ("get", "/tasks/{task_id}"),
    ("delete", "/tasks/{task_id}"), ("put", "/tasks/{task_id}/stop"),
    ("post", "/tasks/{task_id}/stop"), ("post", "/tasks/{task_id}/retry"),
    ("post", "/tasks/{task_id}/pause"), ("post", "/tasks/{task_id}/resume"),
    ("post", "/tasks/{task_id}/abort"), ("post", "/tasks/{task_id}/rollback"),
    ("get", "/orders"), ("post", "/orders"), ("get", "/orders/{task_id}"),
    ("delete", "/orders/{task_id}"), ("put", "/orders/{task_id}/stop"),
    ("post", "/orders/{task_id}/stop"), ("post", "/orders/{task_id}/retry"),
    ("post", "/orders/{task_id}/pause"), ("post", "/orders/{task_id}/resume"),
    ("post", "/orders/{task_id}/abort"), ("post", "/orders/{task_id}/rollback"),
    ("get", "/logs"), ("get", "/targets"), ("post", "/targets/bulk"),
    ("get", "/targets/{target_id}"),
    ("get", "/targets/{target_id}/tasks"), ("get", "/targets/{target_id}/health"),
    ("put", "/targets/{target_id}"), ("delete", "/targets/{target_id}"),
    ("put", "/targets/{target_id}/logs"), ("put", "/targets/{target_id}/stop"),
    ("post", "/targets/{target_id}/stop"),
    ("put", "/targets/{target_id}/command"), ("delete", "/targets/{target_id}/command"),
    ("post", "/token_sets"), ("get", "/token_sets"), ("get", "/token_sets/{name}"),
    ("delete", "/token_sets/{name}"), ("post", "/rpc/targets"), ("get", "/rpc/server_info"),
    ("get", "/rpc/whoami"), ("post", "/api_keys"), ("get", "/api_keys"),
    ("delete", "/api_keys/{key_id}"),
    ("get", "/health"), ("get", "/metrics"), ("get", "/audit"),
    ("get", "/artifacts"), ("get", "/artifacts/{sha256}"), ("get", "/artifacts/{sha256}/download"),
    ("post", "/operator_keys"), ("get", "/operator_keys"), ("get", "/operator_keys/{key_id}"),
    ("get", "/operator_keys/{key_id}/export"), ("delete", "/operator_keys/{key_id}"),
    ("get", "/ca"), ("post", "/ca/export"),
    ("post", "/floorplans"), ("get", "/floorplans"), ("get", "/floorplans/{plan_id}/image"),
    ("delete", "/floorplans/{plan_id}"),
    ("get", "/apps"), ("get", "/apps/{name}"), ("get", "/targets/{target_id}/apps"),
    ("put", "/targets/{target_id}/apps/{name}/stop"),
}  # fmt: skip


async def test_openapi_lists_every_endpoint_with_error_responses(api: Api) -> None:
    doc = (await api.client.get("/openapi.json", headers={"Authorization": ""})).json()
    found = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert found == EXPECTED
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "500" in op["responses"], (method, path)
            if path not in ("/health", "/rpc/server_info", "/rpc/targets"):
                assert "401" in op["responses"] and "403" in op["responses"], (method, path)
    schemas = doc["components"]["schemas"]
    assert {"ErrorBody", "TaskCreate", "DescriptorDeploy"} <= set(schemas)
    assert "/events" in doc["info"]["description"] and "dropped" in doc["info"]["description"]
    body = doc["paths"]["/tasks"]["post"]["requestBody"]["content"]
    assert set(body) == {
        "application/json", "application/yaml", "text/yaml", "multipart/form-data"
    }  # fmt: skip


def test_app_conforms_to_its_own_schema(tmp_path: Path) -> None:
    """Positive cases for every operation with an admin key: no 5xx, every status and body
    documented. Runs the app in schemathesis' ASGI client (its own event loop)."""
    app = create_app(make_settings(tmp_path))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    statuses: list[int] = []
    try:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(
                max_examples=12,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                response = case.call_and_validate(headers=bearer(ADMIN_KEY), checks=checks)
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")

            run()
    finally:
        asgi.shutdown_lifespans()
    assert failures == []
    assert len(statuses) > 100
    assert sum(1 for s in statuses if s < 300) > 30, "authenticated calls must succeed too"
