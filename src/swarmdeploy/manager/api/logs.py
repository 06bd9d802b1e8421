"""``GET /logs``: stored log lines with filters, sorting and paging; JSON or plain text."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from swarmdeploy.manager.api.deps import PageQuery, PerPageQuery, ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import ListOf, LogPublic
from swarmdeploy.manager.services.logs import log_json
from swarmdeploy.protocol.text import escape_unsafe
from swarmdeploy.storage.records import LogQuery, LogRecord, Page

router = APIRouter(tags=["logs"])

Text = Annotated[str | None, Query(max_length=1000)]
Millis = Annotated[int | None, Query(ge=0, le=2**53)]


def wants_text(request: Request) -> bool:
    """Whether the client prefers ``text/plain`` over JSON (first listed wins)."""
    for item in request.headers.get("accept", "").split(","):
        kind = item.split(";")[0].strip().lower()
        if kind == "text/plain":
            return True
        if kind in ("application/json", "application/*"):
            return False
    return False


def render_text(page: Page[LogRecord]) -> str:
    """The readable dump: a header line, then exactly one line per log, with control
    characters escaped (``protocol.text``: a line break cannot forge a row, an escape
    sequence cannot reach the terminal of whoever runs ``curl``)."""
    lines = [f"page: {page.page}, perPage: {page.per_page}, total: {page.total}"]
    for r in page.items:
        when = dt.datetime.fromtimestamp(r.time / 1000, dt.UTC).isoformat(timespec="milliseconds")
        flag = " ERROR" if r.error else ""
        line = f"{when} {r.target} {r.task} {r.stage or '-'} {r.command}{flag} | {r.output}"
        lines.append(escape_unsafe(line))
    return "\n".join(lines) + "\n"


_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/plain": {"schema": {"type": "string"}}},
        "description": "The logs (JSON, or text with Accept: text/plain).",
    }
}


@router.get(
    "/logs", response_model=ListOf[LogPublic], responses={**_CONTENT, **responses(401, 403)}
)
async def query_logs(
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    target: Text = None,
    task: Text = None,
    stage: Text = None,
    command: Text = None,
    output: Annotated[
        str | None, Query(max_length=1000, description="Full-text: all words.")
    ] = None,
    error: Annotated[bool | None, Query(description="Only error lines (true) or none.")] = None,
    since: Millis = None,
    until: Millis = None,
    sort_by: Annotated[
        Literal["time", "target", "task", "stage", "command", "error"], Query(alias="sortBy")
    ] = "time",
    sort_order: Annotated[Literal["asc", "desc"], Query(alias="sortOrder")] = "asc",
    page: PageQuery = 1,
    per_page: PerPageQuery = 100,
) -> Any:
    """Log lines; all given filters must hold. ``since`` is inclusive, ``until`` exclusive.
    Terminal output (task ``terminal``) only of the caller's own commands; admins see all,
    viewers none."""
    query = LogQuery(
        target=target,
        task=task,
        stage=stage,
        command=command,
        output=output or None,
        error=error,
        since=since,
        until=until,
        sort_by=sort_by,
        sort_order=sort_order,
        page=page,
        per_page=per_page,
    )
    result = await services.logs.query(query, principal)
    if wants_text(request):
        return PlainTextResponse(render_text(result))
    items = [log_json(r) for r in result.items]
    return {"total": result.total, "items": items, "page": page, "perPage": per_page}
