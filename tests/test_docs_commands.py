"""Every ``swarmdeploy ...`` command line in a code block of README.md and docs/*.md parses
against the real command line (issue 13), so the docs cannot drift from the code.

* Operator CLI commands: the command path is resolved in the real typer app's click command
  tree (``-o`` moved as the CLI itself does, :func:`hoist_output`), every group's and the
  leaf's options are parsed by click itself (an unknown option, a missing value, an extra
  argument, an unknown command fail), and ``swarmdeploy PATH --help`` must exit 0.
* ``swarmdeploy manager ...``, ``swarmdeploy simulate ...`` and ``swarmdeploy agent ...``: the
  options are parsed by their own argparse parsers (an unknown option or a bad value fails).
  An agent subcommand (``swarmdeploy agent NAME ...``) must answer ``--help`` with status 0.

Values are not checked against a server: a command that parses is "pasteable".
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest
import typer.main

from swarmdeploy.agent.main import build_parser
from swarmdeploy.cli.app import app, main
from swarmdeploy.cli.options import hoist_output
from swarmdeploy.manager.main import _parser as manager_parser
from swarmdeploy.simulate.main import parser as simulate_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1", "&", "1>"}
#: Root options that act when parsed: checked to exist, never parsed.
EAGER = ("--install-completion", "--show-completion", "--version", "--help")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _code_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, logical line)`` of every code-block line, continuations joined."""
    found: list[tuple[int, str]] = []
    inside, pending, start = False, "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if FENCE.match(raw):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = raw.strip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        found.append((start, pending + line))
        pending = ""
    return found


def _command(line: str) -> list[str] | None:
    """The arguments after ``swarmdeploy`` if ``line`` runs it, cut at the first shell
    operator; None for any other line."""
    line = line.removeprefix("$ ").removeprefix("# ").strip()
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] in ("sudo", "exec")):
        words.pop(0)
    if not words or not (words[0] == "swarmdeploy" or words[0].endswith("/swarmdeploy")):
        return None
    args: list[str] = []
    for word in words[1:]:
        if word in SHELL_OPERATORS or word.startswith((">", "2>", "|")):
            break
        args.append(word)
    return args


def _documented() -> list[Any]:
    cases = []
    for path in DOCS:
        for number, line in _code_lines(path.read_text(encoding="utf-8")):
            args = _command(line)
            if args is not None:
                where = f"{path.relative_to(ROOT)}:{number}"
                cases.append(pytest.param(args, id=where))
    return cases


CASES = _documented()


def test_the_docs_have_command_lines_to_check() -> None:
    assert len(CASES) >= 10


def _parse_cli(args: list[str]) -> list[str]:
    """Parse ``args`` with the real click command tree; returns the command path."""
    command: Any = typer.main.get_command(app)
    rest = [a for a in hoist_output(args, command) if a != "--help"]  # checked by main()
    if args[:1] and args[0] in EAGER:  # never run them here (one would edit ~/.bashrc)
        assert any(args[0] in p.opts for p in command.params), f"no option {args[0]}"
        return []
    path: list[str] = []
    parent = None
    name = "swarmdeploy"
    while True:
        ctx = command.make_context(name, list(rest), parent=parent)
        subcommands = getattr(command, "commands", None)
        if not isinstance(subcommands, dict):
            return path
        protected = getattr(ctx, "_protected_args", None)  # click >= 8.2 names it so
        if protected is None:
            protected = getattr(ctx, "protected_args", [])
        rest = [*protected, *ctx.args]
        assert rest, f"{' '.join(['swarmdeploy', *path])} needs a command"
        name = rest.pop(0)
        assert name in subcommands, f"no command {name!r} in swarmdeploy {' '.join(path)}"
        command, parent = subcommands[name], ctx
        path.append(name)


@pytest.mark.parametrize("args", CASES)
def test_documented_command_line_parses(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    if args[:1] == ["manager"]:
        manager_parser().parse_args(args[1:])
        return
    if args[:1] == ["simulate"]:
        simulate_parser().parse_args(args[1:])
        return
    if args[:1] == ["agent"]:
        if len(args) > 1 and not args[1].startswith("-"):
            helped = subprocess.run([sys.executable, "-m", "swarmdeploy", "agent", args[1],
                                     "--help"], capture_output=True, text=True, timeout=60,
                                    check=False)  # fmt: skip
            assert helped.returncode == 0, helped.stderr
            return
        build_parser({}).parse_args(args[1:])
        return
    path = _parse_cli(args)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*path, "--help"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "args",
    [
        ["targets", "list", "--bogus"],
        ["targets", "lst"],
        ["tasks", "create"],
        ["--tag", "x", "targets", "list"],
        ["targets", "update", "a", "b"],
    ],
)
def test_a_wrong_command_line_fails_the_check(args: list[str]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - click's usage errors or the path check
        _parse_cli(args)


def test_a_wrong_manager_option_fails_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        manager_parser().parse_args(["--http-prot", "8080"])
    capsys.readouterr()
