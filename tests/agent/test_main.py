"""``swarmdeploy agent``: options and environment, exit statuses, lean imports, and the agent
as a real process against a tiny manager (HTTP registration + CurveZMQ)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import ConfigError
from swarmdeploy.agent.main import (
    build_parser,
    env_name,
    main,
    settings_from_args,
    terminal_columns,
)
from tests.agent.helpers import SERVER_STACK


def parse(argv: list[str], env: dict[str, str] | None = None) -> AgentSettings:
    return settings_from_args(build_parser(env or {}).parse_args(argv))


def test_every_option_has_an_environment_variable_and_the_command_line_wins() -> None:
    assert env_name("--data-dir") == "SWARMDEPLOY_AGENT_DATA_DIR"
    env = {
        "SWARMDEPLOY_AGENT_DATA_DIR": "/var/lib/sd",
        "SWARMDEPLOY_AGENT_MANAGER": "http://m:8080",
        "SWARMDEPLOY_AGENT_TOKEN": "abcd-efgh-ijkl",
        "SWARMDEPLOY_AGENT_TAGS": "a, b,,a",
        "SWARMDEPLOY_AGENT_LOCATION": "48.1,11.5",
        "SWARMDEPLOY_AGENT_MAX_DATA_BYTES": "10M",
        "SWARMDEPLOY_AGENT_STOP_GRACE_S": "2.5",
    }
    s = parse(["--id", "dev-9", "--tags", "x"], env)
    assert s.data_dir == Path("/var/lib/sd") and s.manager_url == "http://m:8080"
    assert s.token == "abcd-efgh-ijkl" and s.target_id == "dev-9" and s.tags == ("x",)
    assert s.location == (48.1, 11.5) and s.max_data_bytes == 10 << 20 and s.stop_grace_s == 2.5
    assert parse([], env).tags == ("a", "b")


def test_security_options_from_command_line_and_environment() -> None:
    base = {"SWARMDEPLOY_AGENT_DATA_DIR": "/var/lib/sd"}
    assert parse([], base).insecure_lab is False
    assert parse(["--insecure-lab"], base).insecure_lab is True
    for value, expected in (("1", True), ("on", True), ("false", False), ("", False)):
        env = {**base, "SWARMDEPLOY_AGENT_INSECURE_LAB": value}
        assert parse([], env).insecure_lab is expected
    s = parse(["--trust-anchor", "/etc/sd/ca.pem", "--tls-ca", "/etc/sd/api.pem"], base)
    assert s.trust_anchor == Path("/etc/sd/ca.pem") and s.tls_ca == Path("/etc/sd/api.pem")
    env = {**base, "SWARMDEPLOY_AGENT_TLS_CA": "/x.pem", "SWARMDEPLOY_AGENT_TRUST_ANCHOR": "/a"}
    assert parse([], env).tls_ca == Path("/x.pem") and parse([], env).trust_anchor == Path("/a")
    with pytest.raises(ConfigError, match="--insecure-lab"):
        parse([], {**base, "SWARMDEPLOY_AGENT_INSECURE_LAB": "maybe"})


def test_device_policies_default_to_sandboxed_terminal_and_keep() -> None:
    base = {"SWARMDEPLOY_AGENT_DATA_DIR": "/var/lib/sd"}
    s = parse([], base)
    assert (s.terminal, s.on_revoked) == ("sandboxed", "keep")
    s = parse(["--terminal", "off", "--on-revoked", "stop"], base)
    assert (s.terminal, s.on_revoked) == ("off", "stop")
    env = {**base, "SWARMDEPLOY_AGENT_TERMINAL": "root", "SWARMDEPLOY_AGENT_ON_REVOKED": "stop"}
    assert (parse([], env).terminal, parse([], env).on_revoked) == ("root", "stop")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--transport", "carrier-pigeon"], "supported: zmq, http"),
        (["--proxy", "socks5h://127.0.0.1:9050"], "--proxy is not supported"),
        (["--connectivity-hosts", "a.example:1,nope"], "--connectivity-hosts: 'nope'"),
        (["--location", "100,0"], "out of range"),
        (["--id", "bad/id"], "not a valid id"),
        (["--manager", "ftp://x"], "http:// or https://"),
        (["--max-data-bytes", "lots"], "not a size"),
        (["--resend-s", "0"], "positive"),
        (["--trust-anchor", "/nonexistent/ca.pem", "--manager", "http://m"], "--trust-anchor"),
    ],
)
def test_invalid_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert main(["--data-dir", str(tmp_path / "d"), *argv], environ={}) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_missing_data_dir_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], environ={}) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_unregistered_agent_without_token_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data-dir", str(tmp_path / "d"), "--manager", "http://127.0.0.1:9"]
    assert main(argv, environ={}) == 2
    assert "not registered yet" in capsys.readouterr().err


def test_unreachable_manager_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "d"), "--manager", "http://127.0.0.1:9", "--token", "t"]
    status = subprocess.run(
        [sys.executable, "-m", "swarmdeploy.agent.main", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 3
    assert "cannot reach the manager at http://127.0.0.1:9" in status.stderr


FORBIDDEN = [
    *SERVER_STACK,
    "urllib.request",
    "tarfile",
    "zipfile",
    "shutil",
    "psutil",
    "nacl",
]


def test_daemon_and_entry_point_import_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "from swarmdeploy.agent.main import LONG_LIVED, import_long_lived, keep_lean\n"
        "keep_lean()\n"
        "import_long_lived()\n"
        "assert all(name in sys.modules for name in LONG_LIVED)\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_agent_process_runs_without_openssl_and_typing_extensions(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"abc")
    code = (
        "import json, sys\n"
        "from swarmdeploy.agent.main import LEAN_BLOCKED, keep_lean\n"
        "keep_lean()\n"
        "import asyncio, msgspec, swarmdeploy.agent.daemon, swarmdeploy.transport.zmq_agent\n"
        "import swarmdeploy.agent.health, swarmdeploy.agent.trust\n"
        "from swarmdeploy.agent.transfer import sha256_file\n"
        f"digest = sha256_file(__import__('pathlib').Path({str(blob)!r}))\n"
        "loaded = [m for m in LEAN_BLOCKED if sys.modules.get(m)]\n"
        "print(json.dumps([loaded, digest]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, digest = json.loads(out.stdout)
    assert loaded == []
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_option_parsing_loads_no_compression_modules() -> None:
    code = (
        "import argparse, json, sys\n"
        "from swarmdeploy.agent.main import build_parser\n"
        "parser = build_parser({})\n"
        "parser.parse_args(['--data-dir', 'x'])\n"
        "ours = parser.format_help()\n"
        "loaded = [m for m in ('shutil', 'bz2', 'lzma') if m in sys.modules]\n"
        "parser.formatter_class = argparse.HelpFormatter\n"
        "print(json.dumps([loaded, ours, parser.format_help()]))"
    )
    env = {**os.environ, "COLUMNS": "60"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    loaded, ours, argparse_own = json.loads(out.stdout)
    assert loaded == []
    assert ours == argparse_own and "--insecure-lab" in ours  # laid out exactly like argparse


def test_terminal_columns_from_environment_or_default() -> None:
    assert terminal_columns({"COLUMNS": "123"}) == 123
    assert terminal_columns({"COLUMNS": "wide"}) == terminal_columns({})
    assert terminal_columns({}) > 0


def test_sandbox_grants_and_ceilings_from_command_line_and_environment() -> None:
    argv = ["--data-dir", "/var/lib/sd", "--allow-device", "/dev/ttyUSB0"]
    argv += ["--allow-device", "/dev/i2c-1", "--allow-path", "/srv/maps"]
    argv += ["--allow-path", "/var/lib/robot:rw", "--allow-group", "dialout"]
    argv += ["--max-processes", "64", "--max-memory-bytes", "1G", "--max-cpu-s", "3600"]
    s = parse(argv)
    assert s.allow_devices == ("/dev/ttyUSB0", "/dev/i2c-1")
    assert s.allow_paths == (("/srv/maps", False), ("/var/lib/robot", True))
    assert s.allow_groups == ("dialout",)
    ceilings = s.ceilings
    assert (ceilings.processes, ceilings.memory_bytes, ceilings.cpu_s) == (64, 1 << 30, 3600)
    assert (ceilings.file_size_bytes, ceilings.open_files) == (1 << 30, 0)  # defaults
    env = {
        "SWARMDEPLOY_AGENT_DATA_DIR": "/var/lib/sd",
        "SWARMDEPLOY_AGENT_ALLOW_DEVICE": "/dev/video0, /dev/gpiochip0",
        "SWARMDEPLOY_AGENT_ALLOW_GROUP": "video,gpio",
        "SWARMDEPLOY_AGENT_MAX_FILE_SIZE_BYTES": "10M",
    }
    s = parse([], env)
    assert s.allow_devices == ("/dev/video0", "/dev/gpiochip0")
    assert s.allow_groups == ("video", "gpio") and s.ceilings.file_size_bytes == 10 << 20
    assert parse(["--allow-group", "dialout"], env).allow_groups == ("dialout",)  # argv wins


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--allow-device", "ttyUSB0"], "--allow-device 'ttyUSB0' must be an absolute"),
        (["--allow-path", "/srv/../etc:rw"], "--allow-path '/srv/../etc' must be an absolute"),
        (["--allow-path", "/var/lib"], "overlaps the agent's data dir"),
        (["--allow-group", "no such"], "--allow-group 'no such' is not a group name"),
        (["--max-processes", "-1"], "--max-processes must not be negative"),
    ],
)
def test_bad_sandbox_grants_name_the_option(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse(["--data-dir", "/var/lib/sd", *argv])
