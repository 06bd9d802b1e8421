"""Unit tests of ``swarmdeploy simulate``'s options, token file and plain display."""

from __future__ import annotations

import io
import pathlib

import pytest

from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.simulate.display import PlainDisplay, Snapshot, plain_line
from swarmdeploy.simulate.fleet import read_tokens
from swarmdeploy.simulate.main import parse
from swarmdeploy.simulate.state import SimError, SimSettings

BASE = ["--agents", "3", "--manager", "http://127.0.0.1:8080", "--token-set", "load"]
BASE += ["--trust-anchor", "ca.pem"]


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_defaults_give_a_prefix_from_the_token_set() -> None:
    opts = parse([*BASE, "--api-key", "k"])
    assert opts.id_prefix == "sim-load-"
    assert opts.tags == ("simulated",)
    assert (opts.failure_rate, opts.install_s, opts.duration_s) == (0.0, 0.0, 0.0)


def test_no_api_key_and_no_tokens_file_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWARMDEPLOY_API_KEY", raising=False)
    assert "--api-key" in _error(BASE, capsys)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--failure-rate", "1.5"], "--failure-rate"),
        (["--install-time", "-1"], "--install-time"),
        (["--agents", "0"], "--agents"),
        (["--tags", ","], "--tags"),
    ],
)
def test_bad_values_are_refused_naming_the_option(
    extra: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert named in _error([*BASE, "--api-key", "k", *extra], capsys)


def test_manager_must_be_an_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*BASE, "--api-key", "k", "--manager", "tcp://127.0.0.1:5556"]
    assert "not an http:// or https:// URL" in _error(argv, capsys)


def test_settings_refuse_a_rate_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="failure rate"):
        SimSettings("http://127.0.0.1", AnchorSet(), tags=("a",), failure_rate=-0.1)


def test_tokens_file_skips_comments_and_needs_one_token_per_agent(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# set load\naaaa-bbbb-cccc\n\ndddd-eeee-ffff\n")
    assert read_tokens(path, 2) == ["aaaa-bbbb-cccc", "dddd-eeee-ffff"]
    with pytest.raises(SimError, match="holds 2 tokens; 3 agents need one each"):
        read_tokens(path, 3)
    with pytest.raises(SimError, match="--tokens-file"):
        read_tokens(tmp_path / "missing", 1)


def test_plain_display_prints_changes_not_every_tick() -> None:
    out = io.StringIO()
    display = PlainDisplay(out, every_s=2.0, quiet_s=30.0)
    first = Snapshot(elapsed_s=0.0, agents=2, registered=0, connected=0)
    display.update(first)
    display.update(Snapshot(elapsed_s=1.0, agents=2, registered=0, connected=0))  # same
    later = Snapshot(elapsed_s=3.0, agents=2, registered=2, connected=2,
                     tasks={"t1": {"exited": 1, "installing": 1}})  # fmt: skip
    display.update(later)
    lines = out.getvalue().splitlines()
    assert lines == [plain_line(first), plain_line(later)]
    assert "task t1: 1 exited, 1 installing" in lines[1] or "1 installing, 1 exited" in lines[1]


def test_the_http_transport_needs_a_plain_http_manager_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse([*BASE, "--api-key", "k"]).transport == "zmq"
    assert parse([*BASE, "--api-key", "k", "--transport", "http"]).transport == "http"
    argv = [*BASE, "--api-key", "k", "--transport", "http", "--manager", "https://m.example"]
    assert "plain http://" in _error(argv, capsys)
    assert "invalid choice" in _error([*BASE, "--api-key", "k", "--transport", "tcp"], capsys)
    with pytest.raises(ValueError, match="zmq or http"):
        SimSettings("http://m", AnchorSet(), tags=("a",), transport="tcp")
