"""``swarmdeploy keys ca`` and ``keys ca-export``: the deployment CA (issue 5).

``keys ca`` shows the CA's fingerprints and validity (``--pem`` prints only the certificate,
for ``--trust-anchor`` files; ``-o json`` everything). ``keys ca-export --out FILE`` (admin)
saves the CA private key, encrypted with a passphrase (prompted twice, or
``--passphrase-file``), to ``FILE`` (mode 0600) and the certificate next to it;
``swarmdeploy manager --import-ca`` restores them. The commands register themselves on the
``keys`` group of :mod:`swarmdeploy.cli.app`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Annotated

import typer

from swarmdeploy.cli.app import Ctx, keys_app
from swarmdeploy.cli.render import fmt_time, safe

#: The manager refuses shorter passphrases (``POST /ca/export``).
MIN_PASSPHRASE = 8


def _ctx(ctx: typer.Context) -> Ctx:
    obj = ctx.obj
    assert isinstance(obj, Ctx)
    return obj


@keys_app.command("ca")
def ca_show(
    ctx: typer.Context,
    pem: Annotated[bool, typer.Option("--pem", help="Print only the certificate (PEM).")] = False,
) -> None:
    """Show the deployment CA: certificate, fingerprints, validity (any role).

    Example: `swarmdeploy keys ca --pem > ca.pem`
    """
    c = _ctx(ctx)
    doc = c.client.request("GET", "/ca")
    if pem:
        typer.echo(safe(doc["certificate"], keep_newlines=True), nl=False)
    elif c.out.as_json:
        c.out.document(doc)
    else:  # one line per field: fingerprints stay whole for copying
        for name in ("subject", "fingerprint", "keyFingerprint", "publicKey"):
            c.out.message(f"{name}: {doc[name]}")
        c.out.message(f"valid: {fmt_time(doc['notBefore'])} to {fmt_time(doc['notAfter'])}")
        c.out.message("certificate: swarmdeploy keys ca --pem > ca.pem")


def read_passphrase(path: pathlib.Path | None) -> str:
    """The passphrase in ``path`` (without its final line break), else asked for twice on the
    terminal. Raises :class:`typer.BadParameter` for an unreadable file or a short one."""
    if path is None:
        text = str(typer.prompt("Passphrase for the exported CA key", hide_input=True,
                                confirmation_prompt=True))  # fmt: skip
    else:
        try:
            text = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc}") from None
    if len(text) < MIN_PASSPHRASE:
        raise typer.BadParameter(
            f"the passphrase needs at least {MIN_PASSPHRASE} characters",
            param_hint="--passphrase-file",
        )
    return text


def _write_new(path: pathlib.Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise typer.BadParameter(f"{path} exists; choose another file") from None
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)


@keys_app.command("ca-export")
def ca_export(
    ctx: typer.Context,
    out: Annotated[
        pathlib.Path,
        typer.Option(metavar="FILE", help="Write the encrypted private key here (mode 0600)."),
    ],
    cert_out: Annotated[
        pathlib.Path | None,
        typer.Option(
            metavar="FILE", help="Write the certificate here (default: OUT with .crt appended)."
        ),
    ] = None,
    passphrase_file: Annotated[
        pathlib.Path | None,
        typer.Option(metavar="FILE", help="Read the passphrase from this file instead of asking."),
    ] = None,
) -> None:
    """Export the CA private key encrypted with a passphrase, for offline keeping (admin).

    Neither file may exist. Restore with `swarmdeploy manager --import-ca OUT CERT_OUT
    --import-ca-passphrase-file FILE`.

    Example: `swarmdeploy keys ca-export --out ca.key.enc`
    """
    cert_path = cert_out or out.with_name(out.name + ".crt")
    for path in (out, cert_path):
        if path.exists():
            raise typer.BadParameter(f"{path} exists; choose another file")
    passphrase = read_passphrase(passphrase_file)
    c = _ctx(ctx)
    doc = c.client.request("POST", "/ca/export", json={"passphrase": passphrase})
    _write_new(out, doc.pop("privateKey"), 0o600)
    _write_new(cert_path, doc["certificate"], 0o644)
    if c.out.as_json:
        c.out.document({**doc, "keyFile": str(out), "certificateFile": str(cert_path)})
        return
    c.out.message(f"wrote the encrypted CA private key to {out} and its certificate to {cert_path}")
    c.out.message(f"CA fingerprint {doc['fingerprint']}; keep the passphrase apart from the file")
