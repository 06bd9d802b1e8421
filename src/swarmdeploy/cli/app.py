"""The operator command line: ``swarmdeploy <group> <command>``; talks to the manager over REST.

``swarmdeploy manager`` and ``swarmdeploy agent`` are dispatched before this module is imported
(see :mod:`swarmdeploy.entry`). The command groups live in their own modules (``targets``,
``tasks``, ``logs``, ``terminal``, ``keys``, ``audit``); this one holds the root options, the
smaller groups and :func:`main`, which turns every error into one line (``--debug``: the
traceback too) and accepts ``-o``/``--output`` after a command as well as before it
(:mod:`swarmdeploy.cli.options`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pathlib
import sys
from typing import Annotated, Any

import typer

from swarmdeploy.cli import logs as _logs
from swarmdeploy.cli import options
from swarmdeploy.cli import terminal as _terminal
from swarmdeploy.cli.context import Ctx, PageOpt, PerPageOpt, ctx_of, read_file
from swarmdeploy.cli.render import Renderer, safe
from swarmdeploy.cli.targets import targets_app
from swarmdeploy.cli.tasks import tasks_app
from swarmdeploy.client import ApiError, ManagerClient

__all__ = ["Ctx", "app", "keys_app", "main"]

app = typer.Typer(
    help="Operate a swarmdeploy fleet. Also: `swarmdeploy manager ...` runs the Deployment "
    "Manager, `swarmdeploy agent ...` runs the Deployment Agent on a device, "
    "`swarmdeploy simulate ...` load-tests a manager with simulated agents.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
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
app.command("logs")(_logs.logs)
app.command("terminal")(_terminal.terminal)

_ctx = ctx_of
KeyIdArg = Annotated[str, typer.Argument(metavar="KEY_ID", help="Key id.")]
_read = read_file


def _version(value: bool) -> None:
    if value:
        typer.echo(f"swarmdeploy {importlib.metadata.version('swarmdeploy')}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="SWARMDEPLOY_URL", metavar="URL", help="Manager URL.")
    ] = "http://127.0.0.1:8080",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="SWARMDEPLOY_API_KEY", metavar="KEY", help="Operator API key (Bearer)."
        ),
    ] = None,
    output: Annotated[str, options.OutputOption] = "table",
    ca_cert: Annotated[
        pathlib.Path | None,
        typer.Option(
            envvar="SWARMDEPLOY_CA_CERT",
            metavar="FILE",
            help="Trust only these PEM certificates for an https:// manager (its self-signed "
            "certificate or private CA); host names are still checked.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version."),
    ] = False,
) -> None:
    """Operate a swarmdeploy fleet over the manager's REST API.

    Example: `swarmdeploy --url https://manager.example:8080 --ca-cert api.pem targets list`
    """
    client = ManagerClient(url, api_key, ca_cert=ca_cert)
    ctx.call_on_close(client.close)
    ctx.obj = Ctx(client, Renderer(output))


# -- artifacts -------------------------------------------------------------------------------
@artifacts_app.command("list")
def artifacts_list(
    ctx: typer.Context,
    task: Annotated[
        str | None, typer.Option(metavar="ID", help="Only the artifacts of this task.")
    ] = None,
    page: PageOpt = 1,
    per_page: PerPageOpt = 100,
) -> None:
    """List build artifacts with their provenance (task, build host, time).

    Example: `swarmdeploy artifacts list --task 0f3c9a`
    """
    c = _ctx(ctx)
    params = {"task": task, "page": page, "perPage": per_page}
    doc = c.client.request("GET", "/artifacts", params=params)
    c.out.listing(doc, ["sha256", "name", "size", "task", "buildHost", "builtAt"])


@artifacts_app.command("download")
def artifacts_download(
    ctx: typer.Context,
    sha256: Annotated[str, typer.Argument(metavar="SHA256", help="The artifact's SHA-256.")],
    dest: Annotated[
        pathlib.Path, typer.Option("--output-file", "-o", metavar="FILE", help="Where to save it.")
    ],
) -> None:
    """Download an artifact (a tar.gz); its SHA-256 is checked before the file is kept.

    Example: `swarmdeploy artifacts download SHA256 -o app.tar.gz`
    """
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


# -- tokens ----------------------------------------------------------------------------------
@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Token set name.")],
    total: Annotated[
        int, typer.Option(min=1, max=10_000, metavar="N", help="Number of tokens (1-10000).")
    ] = 1,
) -> None:
    """Create a token set; the tokens are shown once.

    Example: `swarmdeploy tokens create lab --total 10`
    """
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
    """List token sets.

    Example: `swarmdeploy tokens list`
    """
    c = _ctx(ctx)
    doc = c.client.request("GET", "/token_sets", params={"page": page, "perPage": per_page})
    c.out.listing(doc, ["name", "total", "available", "expiresAt"])


@tokens_app.command("delete")
def tokens_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Token set name.")],
) -> None:
    """Delete a token set (unspent tokens become invalid).

    Example: `swarmdeploy tokens delete lab`
    """
    c = _ctx(ctx)
    c.client.request("DELETE", f"/token_sets/{name}")
    c.out.message(f"deleted token set {name}")


# -- API keys --------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Key name.")],
    role: Annotated[
        str, typer.Option(metavar="ROLE", help="admin, operator or viewer.")
    ] = "viewer",
) -> None:
    """Create an API key; the secret is shown once.

    Example: `swarmdeploy keys create ci --role operator`
    """
    c = _ctx(ctx)
    doc = c.client.request("POST", "/api_keys", json={"name": name, "role": role})
    c.out.document(doc)


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List API keys (never their secrets).

    Example: `swarmdeploy keys list`
    """
    c = _ctx(ctx)
    c.out.listing(c.client.request("GET", "/api_keys"), ["id", "name", "role", "createdAt"])


@keys_app.command("delete")
def keys_delete(ctx: typer.Context, key_id: KeyIdArg) -> None:
    """Delete an API key and revoke the signing keys it owns (revokes the operator).

    Example: `swarmdeploy keys delete KEY_ID`
    """
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
    name: Annotated[
        str, typer.Option(metavar="NAME", help="Key name (default: your API key's name).")
    ] = "",
    import_file: Annotated[
        pathlib.Path | None,
        typer.Option("--import", metavar="FILE", help="Armored encrypted key to import."),
    ] = None,
    passphrase: PassphraseOpt = "",
    owner: Annotated[
        str, typer.Option(metavar="KEY_ID", help="API key id it is issued to (default: you).")
    ] = "",
) -> None:
    """Issue a signing key (admin), generated or imported (`--import FILE`).

    Example: `swarmdeploy keys signing-create --name ops`
    """
    c = _ctx(ctx)
    body: dict[str, Any] = {"name": name, **({"owner": owner} if owner else {})}
    if import_file is not None:
        body["privateKey"] = _read(import_file).decode("utf-8", "replace")
        body["passphrase"] = passphrase
    c.out.document(c.client.request("POST", "/operator_keys", json=body))


@keys_app.command("signing-list")
def signing_list(ctx: typer.Context) -> None:
    """List operator signing keys (revoked ones too).

    Example: `swarmdeploy keys signing-list`
    """
    c = _ctx(ctx)
    c.out.listing(c.client.request("GET", "/operator_keys"), _SIGNING_COLUMNS)


@keys_app.command("signing-export")
def signing_export(
    ctx: typer.Context,
    key_id: KeyIdArg,
    private: Annotated[
        bool, typer.Option("--private", help="Also the private key (admin only).")
    ] = False,
    passphrase: PassphraseOpt = "",
    out: Annotated[
        pathlib.Path | None,
        typer.Option(metavar="FILE", help="Write the private key here (mode 0600)."),
    ] = None,
) -> None:
    """Export a key's public key and certificate; `--private` also its private key,
    encrypted with the passphrase.

    Example: `swarmdeploy keys signing-export KEY_ID --private --out ops.key`
    """
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
def signing_revoke(ctx: typer.Context, key_id: KeyIdArg) -> None:
    """Revoke a signing key (admin): agents refuse tasks signed with it.

    Example: `swarmdeploy keys signing-revoke KEY_ID`
    """
    c = _ctx(ctx)
    c.client.request("DELETE", f"/operator_keys/{key_id}")
    c.out.message(f"revoked signing key {key_id}")


from swarmdeploy.cli import apps as _apps_commands  # noqa: E402, F401  (apps ...)
from swarmdeploy.cli import audit as _audit_commands  # noqa: E402, F401  (audit ...)
from swarmdeploy.cli import keys as _ca_commands  # noqa: E402, F401  (keys ca, ca-export)


@app.command("server-info")
def server_info(ctx: typer.Context) -> None:
    """What agents need to connect (public).

    Example: `swarmdeploy server-info -o json`
    """
    c = _ctx(ctx)
    c.out.document(c.client.request("GET", "/rpc/server_info"))


def click_command() -> Any:
    """The click command typer builds from :data:`app` (with shell completion), built once."""
    global _COMMAND
    if _COMMAND is None:
        _COMMAND = typer.main.get_command(app)
    return _COMMAND


_COMMAND: Any = None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status: 0 success, 1 for API and other errors, 2 for
    usage errors, 130 when interrupted (and a command's own status, e.g. ``tasks watch``).
    Every error is one line on standard error; ``--debug`` adds the traceback of an
    unexpected one."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in (args[: args.index("--")] if "--" in args else args)
    command = click_command()
    try:  # without standalone mode click returns a typer.Exit's code instead of raising
        status = command.main(
            args=options.hoist_output(args, command), prog_name="swarmdeploy",
            standalone_mode=False,
        )  # fmt: skip
    except ApiError as exc:
        print(f"error: {safe(exc)}", file=sys.stderr)
        return 1
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except Exception as exc:  # click errors carry their exit code; others: one line
        code = getattr(exc, "exit_code", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            return 0
        if isinstance(code, int) and callable(getattr(exc, "format_message", None)):
            print(options.one_line(exc), file=sys.stderr)
            return code
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {safe(exc)} (--debug shows the traceback)",
              file=sys.stderr)  # fmt: skip
        return 1
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
