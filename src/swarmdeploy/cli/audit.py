"""``swarmdeploy audit list`` and ``audit verify``: the manager's audit log (admin).

``audit verify`` walks every page of ``GET /audit`` in ``seq`` order and recomputes the hash
chain (``protocol.audit``). Exit status 0 with the head (``seq`` and hash: note it
somewhere else, a later ``--expect-head`` then also detects a rewritten or cut tail), 3
naming the first bad entry. The commands register themselves as the ``audit`` group of
:mod:`swarmdeploy.cli.app`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from swarmdeploy.cli.app import Ctx, app
from swarmdeploy.client import ManagerClient
from swarmdeploy.protocol.audit import ChainBreak, ChainChecker

audit_app = typer.Typer(help="The audit log: who did what (admin).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

#: Exit status of ``audit verify`` when the chain is broken.
EXIT_BROKEN = 3
_PER_PAGE = 1000


def _ctx(ctx: typer.Context) -> Ctx:
    obj = ctx.obj
    assert isinstance(obj, Ctx)
    return obj


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    page: Annotated[int, typer.Option(min=1, metavar="N", help="Page number (from 1).")] = 1,
    per_page: Annotated[
        int, typer.Option("--per-page", min=1, max=1000, metavar="N", help="Items per page.")
    ] = 100,
) -> None:
    """List audit entries, oldest first.

    Example: `swarmdeploy audit list --per-page 50`
    """
    c = _ctx(ctx)
    doc = c.client.request("GET", "/audit", params={"page": page, "perPage": per_page})
    c.out.listing(doc, ["seq", "at", "actor", "action", "target", "details"])


def check_chain(client: ManagerClient) -> tuple[ChainChecker, ChainBreak | None]:
    """Walk every page of ``GET /audit`` and check the chain; the checker (its ``head``) and
    the first break, if any."""
    checker = ChainChecker()
    page = 1
    while True:
        doc = client.request("GET", "/audit", params={"page": page, "perPage": _PER_PAGE})
        items = doc.get("items", [])
        broken = checker.feed(items)
        if broken is not None or len(items) < _PER_PAGE:
            return checker, broken
        page += 1


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    expect_head: Annotated[
        str | None,
        typer.Option(
            metavar="SEQ:HASH", help="Head noted from an earlier verify: it must still be there."
        ),
    ] = None,
) -> None:
    """Recompute the audit log's hash chain; exit 3 naming the first bad entry.

    Example: `swarmdeploy audit verify --expect-head 42:9f2c...`
    """
    c = _ctx(ctx)
    checker, broken = check_chain(c.client)
    if broken is None and expect_head is not None:
        broken = _check_expected(c.client, expect_head)
    if broken is not None:
        c.out.line(f"audit log BROKEN at entry {broken.seq}: {broken.reason}")
        raise typer.Exit(EXIT_BROKEN)
    seq, digest = checker.head
    c.out.line(f"audit log intact: {checker.checked} entries; head {seq}:{digest}")


def _check_expected(client: ManagerClient, expected: str) -> ChainBreak | None:
    seq_text, _, digest = expected.partition(":")
    if not seq_text.isdigit() or len(digest) != 64:
        raise typer.BadParameter(
            "use SEQ:HASH as printed by audit verify", param_hint="--expect-head"
        )
    seq = int(seq_text)
    doc = client.request("GET", "/audit", params={"page": seq, "perPage": 1})
    items = doc.get("items", [])
    if not items or items[0].get("seq") != seq or items[0].get("hash") != digest:
        return ChainBreak(seq, "the noted head is not in the log any more (cut or rewritten)")
    return None
