"""The OpenAPI document: FastAPI's generated schema plus the task descriptor schema (taken
from ``protocol.descriptor`` itself, so the two cannot drift) and the prose on auth, errors,
paging and the ``/events`` WebSocket, which OpenAPI cannot describe as an operation."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from swarmdeploy.protocol.descriptor import TaskDescriptor

DESCRIPTION = """\
Deployment Manager of **swarmdeploy**: targets (devices), tasks (deployments), logs,
registration token sets, API keys, and live events. Full guide: `docs/api.md`.

**Authentication.** Every management endpoint needs `Authorization: Bearer <key>`: an API key
(`sdk_...`), the bootstrap admin key, or (if configured) an OpenID Connect JWT. Roles:
`viewer` (read), `operator` (also deploy, stop, edit targets, terminal), `admin` (also token
sets, API keys, deleting targets). Public: `/health`, `/rpc/server_info`, `/openapi.json`;
`POST /rpc/targets` takes a registration token in `X-Auth-Token` instead.

**Errors.** Always JSON `{"error": "<message>", "code": "<stable code>"}`; validation errors
add `"path"` (`$.deploy.target` for body fields, `query.perPage` for parameters). 401 missing
or bad credentials, 403 wrong role, 404 unknown resource or route, 405, 409 conflict, 413 body
too large, 415 unsupported Content-Type, 422 invalid input, 429 rate limited (`Retry-After`),
503 storage or queue unavailable (`Retry-After`).

**Lists** are `{"total", "items", "page", "perPage"}`; `page >= 1`, `1 <= perPage <= 1000`.
Times are integers, milliseconds since the Unix epoch.

**Events** (WebSocket `GET /events`, not listed below as OpenAPI cannot describe it): query
`topics` (comma list of `logs`, `targetAdded`, `targetUpdated`, `targetDeleted`, `taskAdded`,
`taskUpdated`, `taskDeleted`,
`rolloutUpdated`; default all), `target`, `task` (filters), and `access_token`
(or the Authorization header; viewer role). Frames: `{"topic", "payload"}`. Each client has a
bounded queue; when it reads too slowly the **oldest** queued events are dropped and the
client then receives `{"topic": "dropped", "payload": {"count": N}}` before the next event.
Other clients are never slowed down.
"""


def descriptor_components() -> dict[str, Any]:
    """JSON-schema components of the task descriptor, the root named ``TaskCreate``."""
    _, components = msgspec.json.schema_components(
        [TaskDescriptor], ref_template="#/components/schemas/Descriptor{name}"
    )
    result: dict[str, Any] = {}
    for name, schema in components.items():
        key = "TaskCreate" if name == "TaskDescriptor" else f"Descriptor{name}"
        result[key] = schema
    result["TaskCreate"]["description"] = (
        "A task descriptor (the original tool's order). Aliases accepted: "
        "`run.autorestart` for `run.autoRestart`, `source.order` for `source.task`. "
        "`source.paths` is refused."
    )
    return result


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` by a generator that adds the descriptor schema."""

    def generate() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                descriptor_components()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = generate  # type: ignore[method-assign]
