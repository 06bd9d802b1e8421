"""Every start-up failure of a real manager process is one line on stderr and exit status 2,
without a traceback (issue 13): busy ports, a data dir that cannot be used, a bad or
unreachable database, bad TLS files."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.cli.manager_proc import free_port

PREFIX = "swarmdeploy manager: "


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port this test listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _manager(data_dir: pathlib.Path, *args: str) -> tuple[int, str]:
    """Run a manager that must fail; its exit status and its one line of error."""
    ports = {"--http-port": free_port(), "--zmq-pub-port": free_port(),
             "--zmq-sub-port": free_port()}  # fmt: skip
    for option in ports:
        if option in args:
            del ports[option]
            break
    cmd = [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", str(data_dir), "--no-gui"]
    cmd += [str(x) for pair in ports.items() for x in pair]
    done = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=90,
        env={**os.environ, "SWARMDEPLOY_ADMIN_KEY": "a-long-enough-admin-key-123"},
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(PREFIX)]
    assert len(errors) == 1, done.stderr
    assert not any(" ERROR " in line for line in done.stderr.splitlines()), done.stderr
    return done.returncode, errors[0][len(PREFIX) :]


def test_busy_http_port(tmp_path: pathlib.Path, busy_port: int) -> None:
    status, line = _manager(tmp_path / "d", "--http-port", str(busy_port))
    assert status == 2
    assert line == f"cannot listen on 127.0.0.1:{busy_port} (HTTP): Address already in use"


def test_busy_zeromq_port(tmp_path: pathlib.Path, busy_port: int) -> None:
    status, line = _manager(tmp_path / "d", "--zmq-pub-port", str(busy_port))
    assert status == 2
    assert line.startswith("cannot start: ") and "Address already in use" in line
    assert f"127.0.0.1:{busy_port}" in line


def test_data_dir_that_is_a_file(tmp_path: pathlib.Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("not a directory")
    status, line = _manager(plain / "d")
    assert status == 2
    assert line.startswith(f"cannot use the data dir {plain / 'd'}: Not a directory")


def test_unknown_database_url(tmp_path: pathlib.Path) -> None:
    status, line = _manager(tmp_path / "d", "--database", "mysql://db.example/x")
    assert status == 2
    assert line.startswith("invalid configuration: database: unknown database URL")


def test_unreachable_database(tmp_path: pathlib.Path) -> None:
    closed = free_port()  # nothing listens there
    status, line = _manager(tmp_path / "d", "--database", f"postgresql://u@127.0.0.1:{closed}/x")
    assert status == 2
    assert line.startswith("cannot start: database unavailable") and "refused" in line


def test_tls_files_that_are_not_a_certificate_and_key(tmp_path: pathlib.Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    key.write_text("not a key\n")
    status, line = _manager(tmp_path / "d", "--tls-cert", str(cert), "--tls-key", str(key))
    assert status == 2
    assert line.startswith(f"cannot use --tls-cert {cert} / --tls-key {key}: not a PEM")
