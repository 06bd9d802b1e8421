"""The ``route`` label: a template, never a raw path (bounded label values)."""

from __future__ import annotations

from starlette.routing import Mount, Route
from starlette.types import Scope

from swarmdeploy.manager.api.middleware import route_template
from swarmdeploy.manager.services.metrics import UNMATCHED_ROUTE


async def _endpoint(scope: Scope, receive: object, send: object) -> None:
    return None


def test_path_parameters_become_their_names() -> None:
    scope = {
        "route": Route("/targets/{target_id}/logs", _endpoint),
        "path": "/targets/pi-7/logs",
        "path_params": {"target_id": "pi-7"},
    }
    assert route_template(scope) == "/targets/{target_id}/logs"


def test_value_repeated_in_the_path_replaces_the_parameter_only() -> None:
    scope = {
        "route": Route("/tasks/{task_id}", _endpoint),
        "path": "/tasks/tasks",
        "path_params": {"task_id": "tasks"},
    }
    assert route_template(scope) == "/tasks/{task_id}"


def test_unmatched_and_mounted_paths_are_not_labels() -> None:
    assert route_template({"path": "/no/such/thing"}) == UNMATCHED_ROUTE
    mount = {"route": Mount("/ui", app=_endpoint), "path": "/ui/any/thing/42", "path_params": {}}
    assert route_template(mount) == "/ui/{path}"
