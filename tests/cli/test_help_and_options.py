"""Help text of every command (an example each, no markup left over, whole metavars),
``--version``, where ``-o`` may stand, one-line errors and the readable ``targets show``
rows (unit tests over the real typer app; no server needed)."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

import pytest
import typer.main

from swarmdeploy.cli.app import app, main
from swarmdeploy.cli.options import hoist_output
from swarmdeploy.cli.target_view import health_text, target_rows
from swarmdeploy.client import ManagerClient
from swarmdeploy.client.stream import EventStream, events_url
from tests.cli.manager_proc import free_port


def _paths(command: Any, path: list[str]) -> list[list[str]]:
    subcommands = getattr(command, "commands", None)
    if not isinstance(subcommands, dict):
        return [path]
    found: list[list[str]] = []
    for name, sub in subcommands.items():
        found += _paths(sub, [*path, name])
    return found


LEAVES = _paths(typer.main.get_command(app), [])


def test_there_are_leaf_commands() -> None:
    assert ["tasks", "watch"] in LEAVES and ["terminal"] in LEAVES and len(LEAVES) > 30


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_command_help_has_an_example_and_no_markup(
    path: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert main([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Example: swarmdeploy " + path[0] in text, text
    assert "``" not in text and "[bold" not in text and "[/" not in text
    assert not re.search(r"\[\[|…", text), text  # no doubled brackets, nothing truncated


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"swarmdeploy {importlib.metadata.version('swarmdeploy')}"
    )


ROOT = typer.main.get_command(app)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["targets", "list", "-o", "json"], ["--output", "json", "targets", "list"]),
        (["-o", "json", "targets", "list"], ["--output", "json", "targets", "list"]),
        (["targets", "list", "--search", "-o"], ["targets", "list", "--search", "-o"]),
        (["artifacts", "download", "X", "-o", "f"], ["artifacts", "download", "X", "-o", "f"]),
        (
            ["artifacts", "download", "X", "--output", "json", "-o", "f"],
            ["--output", "json", "artifacts", "download", "X", "-o", "f"],
        ),
        (
            ["targets", "command", "a", "--", "-o", "json"],
            ["targets", "command", "a", "--", "-o", "json"],
        ),
        (["--url", "-o", "targets", "list"], ["--url", "-o", "targets", "list"]),
    ],
)
def test_hoist_output_moves_only_the_output_option(args: list[str], expected: list[str]) -> None:
    assert hoist_output(args, ROOT) == expected


def test_unexpected_error_is_one_line_and_debug_shows_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("surprise")

    monkeypatch.setattr(ManagerClient, "request", boom)
    assert main(["targets", "list"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: RuntimeError: surprise (--debug shows the traceback)"
    with pytest.raises(RuntimeError):
        main(["--debug", "targets", "list"])


def test_usage_error_is_one_line_naming_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "list", "--bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--bogus" in err and "swarmdeploy targets list --help" in err
    assert len(err.splitlines()) == 1


def test_target_rows_render_reported_fields_or_dash() -> None:
    doc = {"id": "pi", "tags": ["a"], "online": True, "os": "Debian 12", "arch": "aarch64",
           "agentVersion": "0.2.0", "transport": "zmq",
           "health": {"cpu_percent": 12.0, "mem_total_bytes": 4 << 30,
                      "mem_available_bytes": 1 << 30, "__extra__": {"security": {}}},
           "security": {"mode": "verified", "trustsThisManager": True}}  # fmt: skip
    rows = dict(target_rows(doc))
    assert rows["OS"] == "Debian 12" and rows["architecture"] == "aarch64"
    assert rows["agent version"] == "0.2.0" and rows["transport"] == "zmq"
    assert rows["trust"] == "verified" and rows["online"] == "yes"
    assert rows["health"] == "CPU 12%, memory 1.0 GiB free of 4.0 GiB"
    bare = dict(target_rows({"id": "x\x1b[2J"}))
    assert bare["OS"] == bare["transport"] == bare["agent version"] == "-"
    assert "\x1b" not in bare["id"] and health_text(None) == "-"


def test_events_url_follows_the_scheme() -> None:
    assert events_url("https://m.example:8443/base/", {"topics": "logs"}) == (
        "wss://m.example:8443/base/events?topics=logs"
    )
    assert events_url("http://127.0.0.1:8080", {}) == "ws://127.0.0.1:8080/events"


def test_stream_without_a_server_becomes_unavailable_for_polling() -> None:
    with ManagerClient(f"http://127.0.0.1:{free_port()}", None) as client:
        with EventStream(client, {"topics": "logs"}, open_attempts=2) as stream:
            while stream.available:
                assert stream.frames(0.2) == []
            assert stream.reconnects == 0 and not stream.ensure_open()
