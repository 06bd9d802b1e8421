"""``-o``/``--output`` anywhere on the line, and one-line usage errors.

``--output`` is an option of the root command (``swarmdeploy -o json targets list``).
:func:`hoist_output` moves it from anywhere on the command line to the front before click
parses it (``swarmdeploy targets list -o json``), walking the real command tree: it knows
which tokens are subcommands and which are the values of other options, stops at ``--``,
and leaves ``-o`` alone in a command that has an ``-o`` of its own (``artifacts download -o
FILE``; ``--output`` still works there). A later ``--output`` wins over an earlier one.
"""

from __future__ import annotations

from typing import Any

import typer

from swarmdeploy.cli.render import safe

OUTPUTS = ("table", "json")
HELP = "table or json (json: the API's documents, unchanged); also after the command."


def _check_output(value: str) -> str:
    if value not in OUTPUTS:
        raise typer.BadParameter(f"use {' or '.join(OUTPUTS)}, not {value!r}")
    return value


OutputOption = typer.Option("--output", "-o", metavar="FORMAT", callback=_check_output, help=HELP)


def _takes_value(command: Any, token: str) -> bool:
    """Whether ``token`` (an option name) of ``command`` is followed by a value."""
    for param in getattr(command, "params", []):
        if token in getattr(param, "opts", []) and param.param_type_name == "option":
            return not (param.is_flag or getattr(param, "count", False))
    return False


def _owns_short_o(command: Any) -> bool:
    return any(
        "-o" in getattr(p, "opts", []) and p.name != "output"
        for p in getattr(command, "params", [])
    )


def _output_value(args: list[str], i: int, command: Any) -> tuple[str, int] | None:
    """``(value, tokens used)`` if ``args[i]`` is the output option here, else None."""
    token = args[i]
    if token.startswith("--output="):
        return token.split("=", 1)[1], 1
    short = token.startswith("-o") and not token.startswith("--")
    if short and _owns_short_o(command):
        return None
    if token in ("--output", "-o"):
        return (args[i + 1], 2) if i + 1 < len(args) else None
    if short and len(token) > 2:
        return token[2:], 1
    return None


def hoist_output(args: list[str], root: Any) -> list[str]:
    """``args`` with every output option moved to the front, in order (see the module
    docstring); the rest keeps its order."""
    moved: list[str] = []
    kept: list[str] = []
    command = root
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            kept += args[i:]
            break
        found = _output_value(args, i, command)
        if found is not None:
            moved += ["--output", found[0]]
            i += found[1]
            continue
        kept.append(arg)
        i += 1
        subcommands = getattr(command, "commands", None)
        if arg.startswith("-"):
            if "=" not in arg and _takes_value(command, arg) and i < len(args):
                kept.append(args[i])
                i += 1
        elif isinstance(subcommands, dict) and arg in subcommands:
            command = subcommands[arg]
    return moved + kept


def one_line(exc: Exception) -> str:
    """A click error as one line: the message, and for usage errors where to get help."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    text = f"error: {safe(message)}"
    ctx: Any = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        text += f" (see: {ctx.command_path} --help)"
    return text
