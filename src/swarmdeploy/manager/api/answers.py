"""Large JSON answers written without a per-item response-model pass.

FastAPI validates a route's return value against its ``response_model`` and then serializes
it; for a page of 1,000 targets or a task with 5,000 per-target rows that pass costs more
than reading the rows from the database (docs/performance.md "REST API at scale"). The
routes here build documents that already have the model's shape and field order
(``target_json``, ``row_json``) and encode them with msgspec; the route still declares its
``response_model``, so the OpenAPI schema does not change. Parts whose shape comes from a
stored document (the descriptor sections of a task) still go through their pydantic model.
``tests/manager/api/test_answers.py`` holds both paths to the same JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from fastapi import Response
from pydantic import TypeAdapter

from swarmdeploy.manager.api.models import TaskSummary
from swarmdeploy.manager.services.registry import TargetView, target_json
from swarmdeploy.manager.services.task_states import row_json
from swarmdeploy.manager.services.tasks import TaskView, failures_json, task_json

_ENCODER = msgspec.json.Encoder()
_SUMMARY = TypeAdapter(TaskSummary)


def json_answer(doc: Any, *, status_code: int = 200) -> Response:
    """``doc`` (built-in types only) as a JSON answer."""
    return Response(_ENCODER.encode(doc), status_code=status_code, media_type="application/json")


def targets_page(views: Iterable[TargetView], *, total: int, page: int, per_page: int) -> Response:
    """A ``ListOf[TargetPublic]`` answer."""
    items = [target_json(v) for v in views]
    return json_answer({"total": total, "items": items, "page": page, "perPage": per_page})


def task_document(view: TaskView) -> dict[str, Any]:
    """The ``TaskPublic`` document of ``view``: the summary through its model (it carries
    the stored descriptor's sections), then every target's row and the failure groups."""
    head = _SUMMARY.validate_python(task_json(view, with_targets=False))
    doc: dict[str, Any] = _SUMMARY.dump_python(head, mode="json", by_alias=True)
    doc["targets"] = [row_json(t) for t in view.targets]
    doc["failures"] = failures_json(view.targets)
    doc["rollbackOf"] = view.rollback_of
    doc["rolledBackBy"] = list(view.rolled_back_by)
    return doc


def task_answer(view: TaskView, *, status_code: int = 200) -> Response:
    """A ``TaskPublic`` answer."""
    return json_answer(task_document(view), status_code=status_code)
