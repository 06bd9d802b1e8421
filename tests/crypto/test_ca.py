"""The Ed25519 certificate authority: device certificates verify, forgeries do not."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

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


# -- custody: export, import checks, seed (issue 5) -----------------------------------------
def test_exported_key_is_pbes2_pkcs8_with_the_requested_rounds() -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    pem = authority.export_key_pem("pässphrase", iterations=1234)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    assert bytes.fromhex("06092a864886f70d01050d") in der  # PBES2
    assert bytes.fromhex("020204d2") in der  # INTEGER 1234 (iterations)
    loaded = ca_mod.load_ca(pem, authority.cert_pem(), password="pässphrase".encode())
    assert loaded.seed == authority.seed
    with pytest.raises(CertificateError, match="wrong passphrase"):
        ca_mod.load_ca(pem, authority.cert_pem(), password=b"passphrase")
    with pytest.raises(ValueError, match="empty"):
        authority.export_key_pem("")


def test_default_export_uses_600000_rounds() -> None:
    pem = ca_mod.create_ca("ca", now=NOW).export_key_pem("long passphrase")
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    assert ca_mod.EXPORT_PBKDF2_ITERATIONS == 600_000
    assert bytes.fromhex("0203") + (600_000).to_bytes(3, "big") in der


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_openssl_reads_the_exported_key(tmp_path: Path) -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    (tmp_path / "k.pem").write_bytes(authority.export_key_pem("open sesame", iterations=2000))
    result = subprocess.run(
        ["openssl", "pkey", "-in", str(tmp_path / "k.pem"), "-passin", "pass:open sesame",
         "-pubout", "-outform", "DER"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(authority.public_key_raw)


def test_ca_from_seed_rebuilds_the_ca_and_checks_the_certificate() -> None:
    one, two = ca_mod.create_ca("one", now=NOW), ca_mod.create_ca("two", now=NOW)
    rebuilt = ca_mod.ca_from_seed(one.seed, one.cert_pem())
    assert rebuilt.public_key_raw == one.public_key_raw and len(one.seed) == 32
    with pytest.raises(CertificateError, match="does not belong"):
        ca_mod.ca_from_seed(one.seed, two.cert_pem())
    with pytest.raises(CertificateError, match="32 bytes"):
        ca_mod.ca_from_seed(one.seed[:31], one.cert_pem())


def test_fingerprints_are_of_the_certificate_and_of_the_key() -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    der = authority.certificate.public_bytes(serialization.Encoding.DER)
    assert authority.fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()
    raw_hash = hashlib.sha256(authority.public_key_raw).hexdigest()
    assert authority.key_fingerprint == "sha256:" + raw_hash


def test_check_ca_certificate_accepts_our_ca_and_refuses_others() -> None:
    authority = ca_mod.create_ca("ca", now=NOW)
    ca_mod.check_ca_certificate(authority.certificate, now=NOW)
    with pytest.raises(CertificateError, match="not valid now"):
        later = NOW + dt.timedelta(days=ca_mod.CA_VALIDITY_DAYS + 1)
        ca_mod.check_ca_certificate(authority.certificate, now=later)
    device = authority.issue_device_certificate("robot-1", _device_key()[1], now=NOW)
    with pytest.raises(CertificateError, match="self-signed"):
        ca_mod.check_ca_certificate(x509.load_pem_x509_certificate(device), now=NOW)


def _self_signed(*, ca: bool, key_cert_sign: bool = True) -> x509.Certificate:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "c")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usage = dict.fromkeys(
        ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "crl_sign", "encipher_only", "decipher_only"], False
    )  # fmt: skip
    builder = builder.add_extension(
        x509.KeyUsage(key_cert_sign=key_cert_sign, **usage), critical=True
    )
    return builder.sign(key, algorithm=None)


def test_check_ca_certificate_needs_ca_basic_constraints_and_cert_sign_usage() -> None:
    ca_mod.check_ca_certificate(_self_signed(ca=True), now=NOW)
    with pytest.raises(CertificateError, match="cA is false"):
        ca_mod.check_ca_certificate(_self_signed(ca=False), now=NOW)
    with pytest.raises(CertificateError, match="keyCertSign"):
        ca_mod.check_ca_certificate(_self_signed(ca=True, key_cert_sign=False), now=NOW)
