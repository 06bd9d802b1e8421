"""The Ed25519 certificate authority: device certificates verify, forgeries do not."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto.errors import CertificateError, InvalidKey

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _device_key() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, raw


def test_issue_device_certificate_verifies_against_ca() -> None:
    authority = ca_mod.create_ca("test CA", now=NOW)
    _, raw = _device_key()
    pem = authority.issue_device_certificate("robot-1", raw, now=NOW)
    assert ca_mod.verify_device_certificate(pem, authority.cert_pem(), now=NOW) == "robot-1"
    cert = x509.load_pem_x509_certificate(pem)
    public = cert.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert public == raw


def test_verify_device_certificate_other_ca_refused() -> None:
    one, two = ca_mod.create_ca("one", now=NOW), ca_mod.create_ca("two", now=NOW)
    pem = one.issue_device_certificate("robot-1", _device_key()[1], now=NOW)
    with pytest.raises(CertificateError):
        ca_mod.verify_device_certificate(pem, two.cert_pem(), now=NOW)


def test_verify_device_certificate_expired_refused() -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    pem = authority.issue_device_certificate("robot-1", _device_key()[1], now=NOW)
    later = NOW + dt.timedelta(days=ca_mod.DEVICE_VALIDITY_DAYS + 1)
    with pytest.raises(CertificateError, match="not valid at this time"):
        ca_mod.verify_device_certificate(pem, authority.cert_pem(), now=later)


def test_verify_device_certificate_ca_certificate_is_not_a_device() -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    with pytest.raises(CertificateError):
        ca_mod.verify_device_certificate(authority.cert_pem(), authority.cert_pem(), now=NOW)


def test_load_ca_round_trip_signs_the_same() -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    loaded = ca_mod.load_ca(authority.key_pem(), authority.cert_pem())
    assert loaded.public_key_raw == authority.public_key_raw
    pem = loaded.issue_device_certificate("d", _device_key()[1], now=NOW)
    assert ca_mod.verify_device_certificate(pem, authority.cert_pem(), now=NOW) == "d"


def test_load_ca_foreign_key_refused() -> None:
    one, two = ca_mod.create_ca("one", now=NOW), ca_mod.create_ca("two", now=NOW)
    with pytest.raises(CertificateError, match="does not belong"):
        ca_mod.load_ca(one.key_pem(), two.cert_pem())


def test_load_ca_garbage_refused() -> None:
    with pytest.raises(CertificateError):
        ca_mod.load_ca(b"not pem", b"not pem")


def test_sign_is_verifiable_raw_ed25519() -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    _, raw = _device_key()
    signature = authority.sign(raw)
    authority.key.public_key().verify(signature, raw)  # raises if wrong


def test_parse_identity_key_accepts_base64_of_32_bytes() -> None:
    _, raw = _device_key()
    assert ca_mod.parse_identity_key(base64.b64encode(raw).decode()) == raw


@pytest.mark.parametrize(
    "bad", ["", "!!!", base64.b64encode(b"x" * 31).decode(), base64.b64encode(bytes(32)).decode()]
)
def test_parse_identity_key_malformed_raises(bad: str) -> None:
    with pytest.raises(InvalidKey):
        ca_mod.parse_identity_key(bad)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_device_certificate_passes_openssl_verify(tmp_path: Path) -> None:
    authority = ca_mod.create_ca("ca", now=dt.datetime.now(dt.UTC))
    pem = authority.issue_device_certificate(
        "robot-1", _device_key()[1], now=dt.datetime.now(dt.UTC)
    )
    (tmp_path / "ca.pem").write_bytes(authority.cert_pem())
    (tmp_path / "dev.pem").write_bytes(pem)
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "dev.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
