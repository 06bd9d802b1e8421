"""``swarmdeploy logs``: stored log lines (newest first), or ``--follow`` to tail them live
over ``/events`` (topic ``logs``, filtered by target and task on the manager)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from swarmdeploy.cli.context import Ctx, PageOpt, PerPageOpt, ctx_of
from swarmdeploy.cli.render import fmt_time, safe
from swarmdeploy.client import ApiError
from swarmdeploy.client.stream import EventStream

#: How long one wait for events lasts before the stream is checked again.
WAIT_S = 5.0


def logs(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option(metavar="ID", help="Target id.")] = None,
    task: Annotated[str | None, typer.Option(metavar="ID", help="Task id.")] = None,
    stage: Annotated[
        str | None, typer.Option(metavar="STAGE", help="build, install or run.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--grep", metavar="TEXT", help="Full-text search.")
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only error lines.")] = False,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Oldest first (default: newest first).")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Print new lines as they arrive, until Ctrl-C (--target, "
            "--task and --errors filter them).",
        ),
    ] = False,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """Query stored logs (newest first), or tail them live with `--follow`.

    Example: `swarmdeploy logs --task 0f3c9a --errors`, `swarmdeploy logs --follow --target pi-01`
    """
    c = ctx_of(ctx)
    if follow:
        if stage or output:
            raise typer.BadParameter("--follow filters by --target, --task and --errors only")
        _follow(c, target, task, errors)
        return
    params = {
        "target": target,
        "task": task,
        "stage": stage,
        "output": output,
        "error": "true" if errors else None,
        "sortOrder": "asc" if oldest_first else "desc",
        "page": page,
        "perPage": per_page,
    }
    doc = c.client.request("GET", "/logs", params=params)
    c.out.listing(doc, ["time", "target", "task", "stage", "command", "output", "error"])


def log_text(line: dict[str, Any]) -> str:
    """One log line for a terminal: time, target, task, stage, output (escaped)."""
    flag = " ERROR" if line.get("error") else ""
    return (
        f"{fmt_time(line.get('time'))} {safe(line.get('target'))} {safe(line.get('task'))} "
        f"{safe(line.get('stage'))}{flag}: {safe(line.get('output'))}"
    )


def _follow(c: Ctx, target: str | None, task: str | None, errors: bool) -> None:
    params = {"topics": "logs", **({"target": target} if target else {})}
    params.update({"task": task} if task else {})
    with EventStream(c.client, params) as stream:
        stream.wait_open()
        typer.echo("following logs (Ctrl-C to stop)", err=True)
        try:
            _print_lines(c, stream, errors)
        except KeyboardInterrupt:  # the normal end of a tail
            typer.echo("", err=True)


def _print_lines(c: Ctx, stream: EventStream, errors: bool) -> None:
    """Print log lines from ``stream`` until interrupted."""
    while True:
        for frame in stream.frames(WAIT_S):
            if frame.get("topic") != "logs":
                continue
            for line in frame.get("payload") or []:
                if errors and not line.get("error"):
                    continue
                c.out.json_line(line) if c.out.as_json else c.out.line(log_text(line))
        if not stream.available:
            raise ApiError(0, "the manager's event stream was lost and cannot be reopened")
