"""The operator command line: ``swarmdeploy <group> <command>``; talks to the manager over REST.

``swarmdeploy manager`` and ``swarmdeploy agent`` are dispatched before this module is imported
(see :mod:`swarmdeploy.entry`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import sys
from typing import IO, Annotated, Any

import typer

from swarmdeploy.cli.render import Renderer, safe, trust_label
from swarmdeploy.client import ApiError, ManagerClient

app = typer.Typer(
    help="Operate a swarmdeploy fleet. Also: `swarmdeploy manager ...` runs the Deployment "
    "Manager, `swarmdeploy agent ...` runs the Deployment Agent on a device.",
    no_args_is_help=True,
    add_completion=False,
)
targets_app = typer.Typer(help="Registered devices.", no_args_is_help=True)
tasks_app = typer.Typer(help="Deployment (and build) tasks.", no_args_is_help=True)
tokens_app = typer.Typer(help="Registration token sets.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys, operator signing keys and the deployment CA.", no_args_is_help=True
)
artifacts_app = typer.Typer(help="Build artifacts (what build hosts delivered).",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(targets_app, name="targets")
app.add_typer(tasks_app, name="tasks")
app.add_typer(tokens_app, name="tokens")
app.add_typer(keys_app, name="keys")
app.add_typer(artifacts_app, name="artifacts")


@dataclasses.dataclass
class Ctx:
    """What every command needs: a client and a renderer."""

    client: ManagerClient
    out: Renderer


def _ctx(ctx: typer.Context) -> Ctx:
    obj = ctx.obj
    assert isinstance(obj, Ctx)
    return obj


@app.callback()
def _global(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="SWARMDEPLOY_URL", help="Manager URL.")
    ] = "http://127.0.0.1:8080",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SWARMDEPLOY_API_KEY", help="Operator API key (Bearer)."),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table or json (json = the API's documents).")
    ] = "table",
) -> None:
    if output not in ("table", "json"):
        raise typer.BadParameter("use 'table' or 'json'", param_hint="--output")
    client = ManagerClient(url, api_key)
    ctx.call_on_close(client.close)
    ctx.obj = Ctx(client, Renderer(output))


PageOpt = Annotated[int, typer.Option(min=1, help="Page number (from 1).")]
PerPageOpt = Annotated[int, typer.Option("--per-page", min=1, max=1000, help="Items per page.")]


# -- targets ---------------------------------------------------------------------------------
@targets_app.command("list")
def targets_list(
    ctx: typer.Context,
    tag: Annotated[list[str] | None, typer.Option(help="Only targets with this tag (AND).")] = None,
    search: Annotated[str | None, typer.Option(help="Substring of id or name.")] = None,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """List targets."""
    c = _ctx(ctx)
    params = {"tags": ",".join(tag) if tag else None, "search": search}
    doc = c.client.request("GET", "/targets", params={**params, "page": page, "perPage": per_page})
    if not c.out.as_json:
        for item in doc.get("items", []):
            item["trust"] = trust_label(item)
    c.out.listing(doc, ["id", "name", "tags", "online", "trust", "lastSeenAt"])


@targets_app.command("show")
def targets_show(ctx: typer.Context, target_id: str) -> None:
    """Show one target."""
    c = _ctx(ctx)
    c.out.document(c.client.request("GET", f"/targets/{target_id}"))


def _location(value: str) -> dict[str, float]:
    try:
        lat, lon = (float(part) for part in value.split(","))
    except ValueError:
        raise typer.BadParameter(
            "use LAT,LON in decimal degrees", param_hint="--location"
        ) from None
    return {"lat": lat, "lon": lon}


@targets_app.command("update")
def targets_update(
    ctx: typer.Context,
    target_id: str,
    tags: Annotated[str | None, typer.Option(help="Comma-separated tags (replaces).")] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    location: Annotated[str | None, typer.Option(help="LAT,LON")] = None,
) -> None:
    """Change tags, name or location of a target (other fields stay)."""
    body: dict[str, Any] = {}
    if tags is not None:
        body["tags"] = [t.strip() for t in tags.split(",") if t.strip()]
    if name is not None:
        body["name"] = name
    if location is not None:
        body["location"] = _location(location)
    if not body:
        raise typer.BadParameter("give at least one of --tags, --name, --location")
    c = _ctx(ctx)
    c.out.document(c.client.request("PUT", f"/targets/{target_id}", json=body))


@targets_app.command("delete")
def targets_delete(ctx: typer.Context, target_id: str) -> None:
    """Delete (revoke) a target: its key is dropped and its connection refused."""
    c = _ctx(ctx)
    c.client.request("DELETE", f"/targets/{target_id}")
    c.out.message(f"deleted {target_id}")


def _async_request(ctx: typer.Context, method: str, path: str, body: Any = None) -> None:
    c = _ctx(ctx)
    doc = c.client.request(method, path, json=body)
    if c.out.as_json:
        c.out.document(doc)
    else:
        c.out.message(str((doc or {}).get("message", "ok")))


@targets_app.command("stop")
def targets_stop(ctx: typer.Context, target_id: str) -> None:
    """Stop everything the target runs for its deployments."""
    _async_request(ctx, "PUT", f"/targets/{target_id}/stop")


@targets_app.command("logs")
def targets_logs(ctx: typer.Context, target_id: str) -> None:
    """Ask the target to send its buffered logs."""
    _async_request(ctx, "PUT", f"/targets/{target_id}/logs")


@targets_app.command("command")
def targets_command(ctx: typer.Context, target_id: str, command: str) -> None:
    """Run one terminal command on the target (output arrives on /events and in logs)."""
    _async_request(ctx, "PUT", f"/targets/{target_id}/command", {"command": command})


@targets_app.command("command-stop")
def targets_command_stop(ctx: typer.Context, target_id: str) -> None:
    """Kill the running terminal command of the target."""
    _async_request(ctx, "DELETE", f"/targets/{target_id}/command")


# -- tasks -----------------------------------------------------------------------------------
@tasks_app.command("list")
def tasks_list(
    ctx: typer.Context,
    description: Annotated[str | None, typer.Option(help="Full-text search.")] = None,
    desc: Annotated[bool, typer.Option("--desc", help="Newest first.")] = False,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """List tasks."""
    c = _ctx(ctx)
    params = {"description": description, "sortOrder": "desc" if desc else "asc"}
    doc = c.client.request("GET", "/tasks", params={**params, "page": page, "perPage": per_page})
    c.out.listing(doc, ["id", "status", "description", "createdAt"])


@tasks_app.command("show")
def tasks_show(ctx: typer.Context, task_id: str) -> None:
    """Show a task with its per-target states."""
    c = _ctx(ctx)
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
    descriptor: Annotated[pathlib.Path, typer.Argument(help="Task descriptor (YAML or JSON).")],
    archive: Annotated[
        pathlib.Path | None,
        typer.Option(
            help="Source archive (zip or tar.gz) sent apart from the descriptor, which must "
            "then have no source.zip (multipart upload: no base64, streamed from disk)."
        ),
    ] = None,
) -> None:
    """Submit a task descriptor file (with --archive: plus its source archive)."""
    body = _read(descriptor)
    c = _ctx(ctx)
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
    c.out.document(doc) if c.out.as_json else c.out.message(f"created task {doc['id']}")


def _read(path: pathlib.Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from None


@tasks_app.command("delete")
def tasks_delete(ctx: typer.Context, task_id: str) -> None:
    """Delete a finished task and its logs."""
    c = _ctx(ctx)
    c.client.request("DELETE", f"/tasks/{task_id}")
    c.out.message(f"deleted {task_id}")


@tasks_app.command("stop")
def tasks_stop(ctx: typer.Context, task_id: str) -> None:
    """Stop the task's processes on every target."""
    _async_request(ctx, "PUT", f"/tasks/{task_id}/stop")


@tasks_app.command("retry")
def tasks_retry(
    ctx: typer.Context,
    task_id: str,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target", help="Retry on this target (repeatable); default: every failed one."
        ),
    ] = None,
) -> None:
    """Announce a task again to targets that declined or failed it, once the cause is fixed."""
    c = _ctx(ctx)
    doc = c.client.retry_task(task_id, target or None)
    if c.out.as_json:
        c.out.document(doc)
    else:
        c.out.message(f"task {task_id} announced again; status {doc.get('status')}")


# -- artifacts -------------------------------------------------------------------------------
@artifacts_app.command("list")
def artifacts_list(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option(help="Only the artifacts of this task.")] = None,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """List build artifacts with their provenance (task, build host, time)."""
    c = _ctx(ctx)
    params = {"task": task, "page": page, "perPage": per_page}
    doc = c.client.request("GET", "/artifacts", params=params)
    c.out.listing(doc, ["sha256", "name", "size", "task", "buildHost", "builtAt"])


@artifacts_app.command("download")
def artifacts_download(
    ctx: typer.Context,
    sha256: Annotated[str, typer.Argument(help="The artifact's SHA-256.")],
    dest: Annotated[pathlib.Path, typer.Option("--output-file", "-o", help="Where to save it.")],
) -> None:
    """Download an artifact (a tar.gz); its SHA-256 is checked before the file is kept."""
    c = _ctx(ctx)
    try:
        size = c.client.download(f"/artifacts/{sha256}/download", dest)
        actual = _sha256_file(dest)
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {dest}: {exc.strerror}") from None
    if actual != sha256:
        dest.unlink(missing_ok=True)
        raise ApiError(0, f"the download does not match its SHA-256 (got {actual}); removed")
    c.out.message(f"saved {size} bytes to {dest} (SHA-256 verified)")


def _sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- logs ------------------------------------------------------------------------------------
@app.command("logs")
def logs(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option(help="Target id.")] = None,
    task: Annotated[str | None, typer.Option(help="Task id.")] = None,
    stage: Annotated[str | None, typer.Option(help="build, install or run.")] = None,
    output: Annotated[str | None, typer.Option("--grep", help="Full-text search.")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only error lines.")] = False,
    desc: Annotated[bool, typer.Option("--desc", help="Newest first.")] = False,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """Query stored logs."""
    c = _ctx(ctx)
    params = {
        "target": target,
        "task": task,
        "stage": stage,
        "output": output,
        "error": "true" if errors else None,
        "sortOrder": "desc" if desc else "asc",
        "page": page,
        "perPage": per_page,
    }
    doc = c.client.request("GET", "/logs", params=params)
    c.out.listing(doc, ["time", "target", "task", "stage", "command", "output", "error"])


# -- tokens ----------------------------------------------------------------------------------
@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: str,
    total: Annotated[int, typer.Option(min=1, max=10_000, help="Number of tokens.")] = 1,
) -> None:
    """Create a token set; the tokens are shown once."""
    c = _ctx(ctx)
    doc = c.client.request("POST", "/token_sets", params={"name": name, "total": total})
    if c.out.as_json:
        c.out.document(doc)
        return
    c.out.message(f"token set {doc['name']}: {doc['total']} token(s), shown once:")
    for token in doc.get("tokens", []):
        c.out.line(token)


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, page: PageOpt = 1, per_page: PerPageOpt = 100) -> None:
    """List token sets."""
    c = _ctx(ctx)
    doc = c.client.request("GET", "/token_sets", params={"page": page, "perPage": per_page})
    c.out.listing(doc, ["name", "total", "available", "expiresAt"])


@tokens_app.command("delete")
def tokens_delete(ctx: typer.Context, name: str) -> None:
    """Delete a token set (unspent tokens become invalid)."""
    c = _ctx(ctx)
    c.client.request("DELETE", f"/token_sets/{name}")
    c.out.message(f"deleted token set {name}")


# -- API keys --------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: str,
    role: Annotated[str, typer.Option(help="admin, operator or viewer.")] = "viewer",
) -> None:
    """Create an API key; the secret is shown once."""
    c = _ctx(ctx)
    doc = c.client.request("POST", "/api_keys", json={"name": name, "role": role})
    c.out.document(doc)


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List API keys (never their secrets)."""
    c = _ctx(ctx)
    c.out.listing(c.client.request("GET", "/api_keys"), ["id", "name", "role", "createdAt"])


@keys_app.command("delete")
def keys_delete(ctx: typer.Context, key_id: str) -> None:
    """Delete an API key and revoke the signing keys it owns (revokes the operator)."""
    c = _ctx(ctx)
    c.client.request("DELETE", f"/api_keys/{key_id}")
    c.out.message(f"deleted key {key_id}; its signing keys are revoked")


# -- operator signing keys (ADR 0004) --------------------------------------------------------
PassphraseOpt = Annotated[
    str,
    typer.Option(
        envvar="SWARMDEPLOY_KEY_PASSPHRASE", help="Passphrase of an imported or exported key."
    ),
]
_SIGNING_COLUMNS = ["id", "name", "owner", "role", "serial", "createdAt", "revokedAt"]


@keys_app.command("signing-create")
def signing_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Key name (default: your API key's name).")] = "",
    import_file: Annotated[
        pathlib.Path | None, typer.Option("--import", help="Armored encrypted key to import.")
    ] = None,
    passphrase: PassphraseOpt = "",
    owner: Annotated[str, typer.Option(help="API key id it is issued to (default: you).")] = "",
) -> None:
    """Issue a signing key (admin), generated or imported (``--import FILE``)."""
    c = _ctx(ctx)
    body: dict[str, Any] = {"name": name, **({"owner": owner} if owner else {})}
    if import_file is not None:
        body["privateKey"] = _read(import_file).decode("utf-8", "replace")
        body["passphrase"] = passphrase
    c.out.document(c.client.request("POST", "/operator_keys", json=body))


@keys_app.command("signing-list")
def signing_list(ctx: typer.Context) -> None:
    """List operator signing keys (revoked ones too)."""
    c = _ctx(ctx)
    c.out.listing(c.client.request("GET", "/operator_keys"), _SIGNING_COLUMNS)


@keys_app.command("signing-export")
def signing_export(
    ctx: typer.Context,
    key_id: str,
    private: Annotated[bool, typer.Option(help="Also the private key (admin only).")] = False,
    passphrase: PassphraseOpt = "",
    out: Annotated[
        pathlib.Path | None, typer.Option(help="Write the private key here (mode 0600).")
    ] = None,
) -> None:
    """Export a key's public key and certificate; ``--private`` also its private key,
    encrypted with the passphrase."""
    c = _ctx(ctx)
    params = {"private": "true"} if private else None
    headers = {"X-Export-Passphrase": passphrase} if private else None
    doc = c.client.request("GET", f"/operator_keys/{key_id}/export", params=params, headers=headers)
    if out is not None and doc.get("privateKey"):
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(doc.pop("privateKey"))
        c.out.message(f"wrote the encrypted private key to {out}")
    c.out.document(doc)


@keys_app.command("signing-revoke")
def signing_revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a signing key (admin): agents refuse tasks signed with it."""
    c = _ctx(ctx)
    c.client.request("DELETE", f"/operator_keys/{key_id}")
    c.out.message(f"revoked signing key {key_id}")


from swarmdeploy.cli import audit as _audit_commands  # noqa: E402, F401  (audit ...)
from swarmdeploy.cli import keys as _ca_commands  # noqa: E402, F401  (keys ca, ca-export)


@app.command("server-info")
def server_info(ctx: typer.Context) -> None:
    """What agents need to connect (public)."""
    c = _ctx(ctx)
    c.out.document(c.client.request("GET", "/rpc/server_info"))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (1 for API errors, 2 for usage errors)."""
    try:  # without standalone mode click returns a typer.Exit's code instead of raising
        status = app(args=argv, prog_name="swarmdeploy", standalone_mode=False)
    except ApiError as exc:
        print(f"error: {safe(exc)}", file=sys.stderr)
        return 1
    except typer.Abort:
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except Exception as exc:  # click usage errors carry their own exit code
        show = getattr(exc, "show", None)
        if callable(show):
            show()
            return int(getattr(exc, "exit_code", 2))
        raise
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
