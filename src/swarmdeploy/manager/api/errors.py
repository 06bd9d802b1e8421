"""Error answers: every error is JSON ``{"error", "code", "path"?}``.

Handlers cover the services' :class:`~swarmdeploy.manager.errors.ManagerError` tree,
FastAPI's request validation (422, or 400 for malformed JSON), Starlette's HTTP errors (404
for unknown routes, 405, 413) and storage outages (503). Anything else becomes a 500 in
:class:`~swarmdeploy.manager.api.middleware.ErrorAndMetricsMiddleware`, without traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from swarmdeploy.manager.api.models import ErrorBody
from swarmdeploy.manager.errors import ManagerError, RateLimited, Unauthorized, Unavailable
from swarmdeploy.storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

#: Statuses every endpoint may answer, documented once per route in the OpenAPI schema.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed body (JSON, YAML or encoding)."},
    413: {"model": ErrorBody, "description": "Body larger than the limit for the endpoint."},
    422: {
        "model": ErrorBody,
        "description": "Invalid parameters or body (`path` names the field).",
    },
    500: {"model": ErrorBody, "description": "Unexpected server error (no details leak)."},
    503: {"model": ErrorBody, "description": "Storage unavailable; retry later."},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries (:class:`ErrorBody`) for the given error statuses."""
    descriptions = {
        400: "Malformed body.",
        401: "Missing or invalid credentials.",
        403: "The caller's role does not allow this.",
        404: "Not found.",
        409: "Conflict with the current state.",
        413: "Body larger than the limit.",
        415: "Unsupported Content-Type.",
        429: "Too many attempts; see Retry-After.",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


def error_body(message: str, code: str, path: str | None = None) -> dict[str, str]:
    """The JSON error document."""
    body = {"error": message, "code": code}
    if path is not None:
        body["path"] = path
    return body


def format_loc(loc: Sequence[Any]) -> str:
    """``("body", "deploy", "tags", 0)`` -> ``$.deploy.tags[0]``; ``("query", "perPage")`` ->
    ``query.perPage``."""
    if not loc:
        return "$"
    where, rest = loc[0], loc[1:]
    if where == "body":
        out = "$"
        for part in rest:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out
    return ".".join(str(p) for p in loc)


async def _manager_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ManagerError)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    body = error_body(exc.message, exc.code, exc.path)
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        detail = ctx.get("error", "JSON decode error") if isinstance(ctx, dict) else "invalid"
        return JSONResponse(error_body(f"malformed JSON: {detail}", "malformed_body"), 400)
    path = format_loc(first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    elif first.get("type") == "missing":
        message = "field required"
    return JSONResponse(error_body(f"{path}: {message}", "validation_error", path), 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 413:
        message = "the request body is larger than the limit for this endpoint"
    return JSONResponse(error_body(message, code), exc.status_code, headers=exc.headers)


async def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("storage unavailable during %s %s: %s", request.method, request.url.path, exc)
    body = error_body("the database is unavailable; retry later", "unavailable")
    return JSONResponse(body, 503, headers={"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(ManagerError, _manager_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
