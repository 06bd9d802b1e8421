"""What every command shares: the client and renderer of the invocation (:class:`Ctx`),
the paging options and reading an input file with a one-line error."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Annotated

import typer

from swarmdeploy.cli.render import Renderer
from swarmdeploy.client import ManagerClient


@dataclasses.dataclass
class Ctx:
    """What every command needs: a client and a renderer (``-o`` may replace the renderer
    after the subcommand's name, see :mod:`swarmdeploy.cli.options`)."""

    client: ManagerClient
    out: Renderer


def ctx_of(ctx: typer.Context) -> Ctx:
    """The :class:`Ctx` the root callback stored on the click context."""
    obj = ctx.obj
    assert isinstance(obj, Ctx)
    return obj


PageOpt = Annotated[int, typer.Option(min=1, metavar="N", help="Page number (from 1).")]
PerPageOpt = Annotated[
    int, typer.Option("--per-page", min=1, max=1000, metavar="N", help="Items per page.")
]


def read_file(path: pathlib.Path) -> bytes:
    """The bytes of ``path``; :class:`typer.BadParameter` naming the file and the reason."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from None
