"""``--ca-cert FILE`` against a real manager serving HTTPS with a self-signed certificate
(``--tls-cert``/``--tls-key``): refused with one line without it, trusted with it, for REST
and for the ``wss://`` event stream."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pathlib
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmdeploy.cli.app import main
from swarmdeploy.client import ApiError, ManagerClient
from swarmdeploy.client.stream import EventStream
from swarmdeploy.localfleet import wait_for
from tests.cli.manager_proc import free_port


def _self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1 (not a CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "api.pem", directory / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    key_file.chmod(0o600)
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_manager(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, pathlib.Path]]:
    root = tmp_path_factory.mktemp("cli-tls")
    cert, key_file = _self_signed(root)
    port, key = free_port(), secrets.token_urlsafe(24)
    cmd = [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", str(root / "m")]
    cmd += ["--http-port", str(port), "--zmq-pub-port", str(free_port()), "--no-gui"]
    cmd += ["--zmq-sub-port", str(free_port()), "--tls-cert", str(cert), "--tls-key", str(key_file)]
    env = {**os.environ, "SWARMDEPLOY_ADMIN_KEY": key}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"https://127.0.0.1:{port}"
    try:
        with ManagerClient(url, None, ca_cert=cert) as probe:

            def healthy() -> bool:
                assert proc.poll() is None, "manager exited"
                try:
                    return bool(probe.request("GET", "/health"))
                except ApiError:
                    return False

            wait_for(healthy, timeout_s=30, what="the TLS manager to be healthy")
        yield url, key, cert
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_untrusted_certificate_is_one_line_error(
    tls_manager: tuple[str, str, pathlib.Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, key, _ = tls_manager
    assert main(["--url", url, "--api-key", key, "targets", "list"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the manager" in err and "CERTIFICATE_VERIFY_FAILED" in err
    assert len(err.strip().splitlines()) == 1


def test_ca_cert_trusts_the_self_signed_manager_for_rest_and_events(
    tls_manager: tuple[str, str, pathlib.Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, key, cert = tls_manager
    rc = main(["--url", url, "--api-key", key, "--ca-cert", str(cert), "-o", "json",
               "tokens", "list"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    with ManagerClient(url, key, ca_cert=cert) as client, EventStream(client, {}) as stream:
        stream.wait_open()  # wss:// with the same trust


def test_unreadable_ca_cert_names_the_file(
    tls_manager: tuple[str, str, pathlib.Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
) -> None:
    url, _, _ = tls_manager
    bogus = tmp_path / "not-a-cert.pem"
    bogus.write_text("hello\n")
    for path in (bogus, tmp_path / "missing.pem"):
        assert main(["--url", url, "--ca-cert", str(path), "targets", "list"]) == 1
        err = capsys.readouterr().err
        assert f"cannot use --ca-cert {path}" in err and len(err.strip().splitlines()) == 1
