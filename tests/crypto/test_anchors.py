"""Trust anchors: the CA key read from ca.pem by a strict DER walk, raw keys and pins."""

from __future__ import annotations

import base64
import datetime as dt
import functools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto import der
from swarmdeploy.crypto.anchors import (
    AnchorSet,
    certificate_fingerprint,
    key_fingerprint,
    parse_anchor_file,
    parse_ca_certificate,
    parse_fingerprint,
)
from swarmdeploy.crypto.rejections import (
    AnchorMismatch,
    BadSignature,
    Malformed,
    VerificationError,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@functools.cache
def _ca() -> ca_mod.CertificateAuthority:
    return ca_mod.create_ca("anchor test CA", now=NOW)


def _der() -> bytes:
    return _ca().certificate.public_bytes(serialization.Encoding.DER)


def _b64key() -> str:
    return base64.b64encode(_ca().public_key_raw).decode()


def test_ca_pem_yields_the_ca_key_and_validity() -> None:
    anchors = parse_anchor_file(_ca().cert_pem().decode())
    (anchor,) = anchors.keys
    assert anchor.public_key == _ca().public_key_raw
    assert anchor.not_after_ms == int(_ca().certificate.not_valid_after_utc.timestamp()) * 1000
    assert anchor.cert_der == _der()
    assert anchor.fingerprint == key_fingerprint(_ca().public_key_raw)


def test_anchor_file_mixes_pem_raw_keys_pins_and_comments() -> None:
    other = ca_mod.create_ca("second CA", now=NOW)
    pin = certificate_fingerprint(b"some cert")
    text = (
        "# provisioned 2026-01-01\n"
        f"{_ca().cert_pem().decode()}\n"
        f"ed25519:{base64.b64encode(other.public_key_raw).decode()}  # rotation key\n"
        f"{_b64key()}\n"  # the same key as the PEM: not listed twice
        f"{pin}\n\n"
    )
    anchors = parse_anchor_file(text)
    assert [a.public_key for a in anchors.keys] == [_ca().public_key_raw, other.public_key_raw]
    assert anchors.pins == (parse_fingerprint(pin),)


def test_device_certificate_is_not_an_anchor() -> None:
    pem = _ca().issue_device_certificate(
        "robot-1", ca_mod.create_ca("x", now=NOW).public_key_raw, now=NOW
    )
    with pytest.raises(Malformed, match="self-signed"):
        parse_anchor_file(pem.decode())


def _ec_certificate(extension_value: bytes) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), extension_value
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_ec_certificate_with_hidden_ed25519_key_refused() -> None:
    """A byte search for the Ed25519 SPKI prefix would trust the key hidden in an extension."""
    hidden = bytes.fromhex("302a300506032b6570032100") + b"\x42" * 32
    data = _ec_certificate(hidden)
    assert hidden in data
    with pytest.raises(Malformed, match="Ed25519"):
        parse_ca_certificate(data)


def test_changed_self_signature_bad_signature() -> None:
    data = bytearray(_der())
    data[-1] ^= 0x01
    with pytest.raises(BadSignature):
        parse_ca_certificate(bytes(data))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d + b"\x00",  # trailing bytes
        lambda d: d[:-1],  # truncated
        lambda d: d[:1] + b"\x80" + d[4:],  # indefinite length
        lambda d: d[:1] + bytes([0x83, 0]) + d[2:],  # non-minimal long form length
        lambda d: b"\x1f" + d[1:],  # high tag number
        lambda d: b"",
    ],
)
def test_non_der_refused(mangle: object) -> None:
    assert callable(mangle)
    with pytest.raises(Malformed):
        parse_ca_certificate(mangle(_der()))


def test_minimal_long_form_lengths_accepted() -> None:
    assert der.read_tlv(b"\x04\x81\x80" + b"x" * 128, 0, 131).end == 131
    with pytest.raises(Malformed):
        der.read_tlv(b"\x04\x81\x7f" + b"x" * 127, 0, 130)  # 127 fits the short form


@settings(max_examples=400, deadline=None)
@given(index=st.integers(min_value=0, max_value=10_000), delta=st.integers(1, 255))
def test_any_changed_certificate_byte_refused(index: int, delta: int) -> None:
    """Every byte is either structure (checked) or under the self-signature (verified)."""
    data = bytearray(_der())
    data[index % len(data)] = (data[index % len(data)] + delta) % 256
    with pytest.raises(VerificationError):
        parse_ca_certificate(bytes(data))


@pytest.mark.parametrize(
    "line",
    [
        "not base64!",
        base64.b64encode(b"x" * 31).decode(),
        base64.b64encode(bytes(32)).decode(),
        "sha256:abcd",
        "-----BEGIN PUBLIC KEY-----",
    ],
)
def test_bad_anchor_line_malformed(line: str) -> None:
    with pytest.raises(Malformed):
        parse_anchor_file(line + "\n")


def test_certificate_fingerprint_matches_x509_tools() -> None:
    expected = _ca().certificate.fingerprint(hashes.SHA256()).hex()
    assert certificate_fingerprint(_der()) == "sha256:" + expected
    colons = "SHA256:" + ":".join(f"{b:02X}" for b in bytes.fromhex(expected))
    assert parse_fingerprint(colons) == bytes.fromhex(expected)


def test_adopt_by_key_pin_adds_the_presented_key() -> None:
    pinned = parse_anchor_file(key_fingerprint(_ca().public_key_raw) + "\n")
    assert not pinned.keys
    adopted = pinned.adopt(_ca().public_key_raw)
    assert adopted.key_for(key_fingerprint(_ca().public_key_raw)) is not None


def test_adopt_by_certificate_pin_takes_validity_from_certificate() -> None:
    pinned = parse_anchor_file(certificate_fingerprint(_der()) + "\n")
    (anchor,) = pinned.adopt(_ca().public_key_raw, _der()).keys
    assert anchor.not_before_ms > 0 and anchor.cert_der == _der()


def test_adopt_impostor_ca_anchor_mismatch() -> None:
    impostor = ca_mod.create_ca("impostor", now=NOW)
    impostor_der = impostor.certificate.public_bytes(serialization.Encoding.DER)
    for anchors in (
        parse_anchor_file(key_fingerprint(_ca().public_key_raw) + "\n"),
        parse_anchor_file(_ca().cert_pem().decode()),
        AnchorSet(),
    ):
        with pytest.raises(AnchorMismatch):
            anchors.adopt(impostor.public_key_raw, impostor_der)


def test_adopt_certificate_pin_with_other_key_anchor_mismatch() -> None:
    pinned = parse_anchor_file(certificate_fingerprint(_der()) + "\n")
    impostor = ca_mod.create_ca("impostor", now=NOW).public_key_raw
    with pytest.raises(AnchorMismatch):
        pinned.adopt(impostor, _der())  # the pinned certificate, but another key


def test_adopt_known_key_keeps_anchors() -> None:
    anchors = parse_anchor_file(_ca().cert_pem().decode())
    assert anchors.adopt(_ca().public_key_raw) is anchors
