"""``swarmdeploy tasks ...``: list (newest first), show, create (``--follow``), watch, stop,
retry, delete; pause, resume and abort of a staged rollout, rollback of a release
(docs/rollouts.md)."""

from __future__ import annotations

import pathlib
from typing import IO, Annotated

import typer

from swarmdeploy.cli import live
from swarmdeploy.cli.context import Ctx, PageOpt, PerPageOpt, ctx_of, read_file

tasks_app = typer.Typer(help="Deployment (and build) tasks.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="Task id.")]
PollOpt = Annotated[
    float,
    typer.Option("--poll", min=0.5, metavar="SECONDS", help="Read the task at least this often."),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        min=1,
        metavar="SECONDS",
        help=f"Give up after this long (exit status {live.EXIT_TIMEOUT}).",
    ),
]


@tasks_app.command("list")
def tasks_list(
    ctx: typer.Context,
    description: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Full-text search.")
    ] = None,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Oldest first (default: newest first).")
    ] = False,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """List tasks, newest first.

    Example: `swarmdeploy tasks list --description firmware -o json`
    """
    c = ctx_of(ctx)
    order = "asc" if oldest_first else "desc"
    params = {"description": description, "sortOrder": order, "page": page, "perPage": per_page}
    doc = c.client.request("GET", "/tasks", params=params)
    c.out.listing(doc, ["id", "status", "description", "createdAt"])


@tasks_app.command("show")
def tasks_show(ctx: typer.Context, task_id: IdArg) -> None:
    """Show a task with its per-target states.

    Example: `swarmdeploy tasks show 0f3c9a`
    """
    c = ctx_of(ctx)
    doc = c.client.request("GET", f"/tasks/{task_id}")
    if c.out.as_json:
        c.out.document(doc)
        return
    summary = {k: v for k, v in doc.items() if k not in ("targets", "descriptor")}
    c.out.document(summary)
    targets = doc.get("targets", [])
    c.out.listing(
        {"items": targets, "total": len(targets), "page": 1, "perPage": len(targets)},
        ["id", "role", "state", "reason", "updatedAt"],
    )


@tasks_app.command("create")
def tasks_create(
    ctx: typer.Context,
    descriptor: Annotated[
        pathlib.Path, typer.Argument(metavar="FILE", help="Task descriptor (YAML or JSON).")
    ],
    archive: Annotated[
        pathlib.Path | None,
        typer.Option(
            metavar="FILE",
            help="Source archive (zip or tar.gz) sent apart from the descriptor, which must "
            "then have no source.zip (multipart upload: no base64, streamed from disk).",
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Follow the rollout live (as tasks watch).")
    ] = False,
    poll: PollOpt = 5.0,
    timeout: TimeoutOpt = None,
) -> None:
    """Submit a task descriptor file (with `--archive`: plus its source archive). With
    `--follow`, watch it like `tasks watch` and exit 0 only if every target succeeded.

    Example: `swarmdeploy tasks create deploy.yml --follow`
    """
    body = read_file(descriptor)
    c = ctx_of(ctx)
    if archive is None:
        doc = c.client.request(
            "POST", "/tasks", content=body, headers={"Content-Type": "application/yaml"}
        )
    else:
        try:
            handle = archive.open("rb")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {archive}: {exc.strerror}") from None
        with handle:
            files: dict[str, tuple[str | None, IO[bytes] | str, str]] = {
                "descriptor": (None, body.decode("utf-8", "replace"), "application/yaml"),
                "archive": (archive.name, handle, "application/octet-stream"),
            }
            doc = c.client.post_files("/tasks", files)
    if not follow:
        c.out.document(doc) if c.out.as_json else c.out.message(f"created task {doc['id']}")
        return
    c.out.message(f"created task {doc['id']}")
    _watch(c, str(doc["id"]), poll, timeout)


@tasks_app.command("watch")
def tasks_watch(
    ctx: typer.Context, task_id: IdArg, poll: PollOpt = 5.0, timeout: TimeoutOpt = None
) -> None:
    """Follow a task live until no target is on its way (or its staged rollout halted):
    counts per state, a progress bar, failures grouped by reason, the devices still waiting,
    the rollout's state and groups; then a summary line. Exit status 0 only if every target
    succeeded, 1 otherwise, 3 at `--timeout`. Not on a terminal: plain lines; with
    `-o json`: the final task document.

    Example: `swarmdeploy tasks watch 0f3c9a --timeout 600`
    """
    _watch(ctx_of(ctx), task_id, poll, timeout)


def _watch(c: Ctx, task_id: str, poll_s: float, timeout_s: float | None) -> None:
    doc, now, timed_out = live.watch(
        c.client, task_id, c.out.console, as_json=c.out.as_json, poll_s=poll_s,
        timeout_s=timeout_s,
    )  # fmt: skip
    ending = f"timed out after {timeout_s:g} s: " if timed_out else ""
    rollout = live.rollout_line(doc)
    if c.out.as_json:  # the document on stdout, the summary for people on stderr
        c.out.document(doc)
        if rollout is not None:
            typer.echo(f"task {task_id}: {rollout}", err=True)
        typer.echo(f"task {task_id}: {ending}{now.summary()}", err=True)
    else:
        for line in live.failure_lines(now):
            c.out.line(line)
        if rollout is not None:
            c.out.line(f"task {task_id}: {rollout}")
        c.out.line(f"task {task_id}: {ending}{now.summary()}")
    if timed_out:
        raise typer.Exit(live.EXIT_TIMEOUT)
    if not now.all_succeeded:
        raise typer.Exit(1)


@tasks_app.command("delete")
def tasks_delete(ctx: typer.Context, task_id: IdArg) -> None:
    """Delete a finished task and its logs.

    Example: `swarmdeploy tasks delete 0f3c9a`
    """
    c = ctx_of(ctx)
    c.client.request("DELETE", f"/tasks/{task_id}")
    c.out.message(f"deleted {task_id}")


@tasks_app.command("stop")
def tasks_stop(ctx: typer.Context, task_id: IdArg) -> None:
    """Stop the task's processes on every target.

    Example: `swarmdeploy tasks stop 0f3c9a`
    """
    c = ctx_of(ctx)
    doc = c.client.request("PUT", f"/tasks/{task_id}/stop")
    if c.out.as_json:
        c.out.document(doc)
    else:
        c.out.message(str((doc or {}).get("message", "ok")))


@tasks_app.command("retry")
def tasks_retry(
    ctx: typer.Context,
    task_id: IdArg,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="ID",
            help="Retry on this target (repeatable); default: every one that declined or failed.",
        ),
    ] = None,
) -> None:
    """Announce a task again to targets that declined or failed it, once the cause is fixed.

    Example: `swarmdeploy tasks retry 0f3c9a --target pi-07`
    """
    c = ctx_of(ctx)
    doc = c.client.retry_task(task_id, target or None)
    if c.out.as_json:
        c.out.document(doc)
    else:
        c.out.message(f"task {task_id} announced again; status {doc.get('status')}")


def _rollout_action(ctx: typer.Context, task_id: str, action: str) -> None:
    """POST ``/tasks/ID/<action>`` and say where the rollout stands."""
    c = ctx_of(ctx)
    doc = c.client.request("POST", f"/tasks/{task_id}/{action}")
    if c.out.as_json:
        c.out.document(doc)
        return
    rollout = (doc or {}).get("rollout") or {}
    groups = rollout.get("groups") or []
    current = int(rollout.get("currentGroup") or 0)
    where = f", group {current + 1} of {len(groups)}" if groups else ""
    c.out.message(f"rollout of task {task_id}: {rollout.get('state')}{where}")


@tasks_app.command("pause")
def tasks_pause(ctx: typer.Context, task_id: IdArg) -> None:
    """Pause a staged rollout: nothing more is announced until it is resumed.

    Example: `swarmdeploy tasks pause 0f3c9a`
    """
    _rollout_action(ctx, task_id, "pause")


@tasks_app.command("resume")
def tasks_resume(ctx: typer.Context, task_id: IdArg) -> None:
    """Resume a paused or halted staged rollout (its thresholds are counted again).

    Example: `swarmdeploy tasks resume 0f3c9a`
    """
    _rollout_action(ctx, task_id, "resume")


@tasks_app.command("abort")
def tasks_abort(ctx: typer.Context, task_id: IdArg) -> None:
    """Abort a staged rollout: devices not announced yet never get the task.

    Example: `swarmdeploy tasks abort 0f3c9a`
    """
    _rollout_action(ctx, task_id, "abort")


@tasks_app.command("rollback")
def tasks_rollback(ctx: typer.Context, task_id: IdArg) -> None:
    """Roll a release back: deploy the previous release of its app to every device that got
    it, as a new task (printed); an open staged rollout of the task is aborted.

    Example: `swarmdeploy tasks rollback 0f3c9a`
    """
    c = ctx_of(ctx)
    doc = c.client.request("POST", f"/tasks/{task_id}/rollback", json={})
    if c.out.as_json:
        c.out.document(doc)
        return
    devices = len(doc.get("targets") or [])
    version = f" {doc['version']}" if doc.get("version") else ""
    c.out.message(
        f"rolling task {task_id} back: task {doc['id']} deploys {doc.get('app')}{version} "
        f"to {devices} device(s)"
    )
