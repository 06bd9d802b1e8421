"""Operator certificates and revocation lists: compact statements signed by the CA."""

from __future__ import annotations

import base64
import datetime as dt
import os

import msgspec
import pytest

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto.anchors import AnchorKey, AnchorSet, parse_anchor_file
from swarmdeploy.crypto.operator import (
    CERT_DOMAIN,
    OperatorCertificate,
    RevocationList,
    ca_issuer,
    issue_operator_certificate,
    issue_revocation_list,
    key_id,
    open_operator_certificate,
    public_key_of,
    seed_signer,
    unverified_certificate,
    verify_operator_certificate,
    verify_revocation_list,
)
from swarmdeploy.crypto.rejections import (
    BadSignature,
    CertificateExpired,
    Malformed,
    Rollback,
    UnknownSigner,
)
from swarmdeploy.crypto.signing import Revocations
from tests.crypto import signing_rig as rig
from tests.crypto.signing_rig import DAY_MS, NOW_MS


def _body(seed: bytes, **overrides: object) -> OperatorCertificate:
    public = public_key_of(seed)
    fields: dict[str, object] = {
        "serial": 1,
        "key_id": key_id(public),
        "name": "bob",
        "role": "admin",
        "public_key": public,
        "issuer": ca_issuer(rig.authority().public_key_raw),
        "not_before_ms": NOW_MS - DAY_MS,
        "not_after_ms": NOW_MS + DAY_MS,
    }
    fields.update(overrides)
    return OperatorCertificate(**fields)  # type: ignore[arg-type]


def test_certificate_from_cryptography_ca_verifies_with_pynacl() -> None:
    seed = os.urandom(32)
    data = issue_operator_certificate(_body(seed), rig.authority().sign)
    cert = verify_operator_certificate(data, rig.anchors(), now_ms=NOW_MS)
    assert cert.public_key == public_key_of(seed)
    assert cert.role == "admin"
    assert len(data) < 1024  # fits the task message's certificate field many times over


def test_certificate_from_pynacl_ca_verifies() -> None:
    ca_seed = os.urandom(32)
    anchors = AnchorSet((AnchorKey(public_key_of(ca_seed)),))
    seed = os.urandom(32)
    body = _body(seed, issuer=ca_issuer(public_key_of(ca_seed)))
    data = issue_operator_certificate(body, seed_signer(ca_seed))
    assert verify_operator_certificate(data, anchors, now_ms=NOW_MS) == body


def test_issue_with_key_id_of_other_key_refused() -> None:
    with pytest.raises(Malformed, match="key_id"):
        issue_operator_certificate(_body(os.urandom(32), key_id="0" * 32), rig.authority().sign)


def test_issue_with_empty_validity_refused() -> None:
    body = _body(os.urandom(32), not_before_ms=NOW_MS, not_after_ms=NOW_MS)
    with pytest.raises(Malformed, match="validity"):
        issue_operator_certificate(body, rig.authority().sign)


def test_tampered_certificate_body_bad_signature() -> None:
    data = issue_operator_certificate(_body(os.urandom(32)), rig.authority().sign)
    envelope = msgspec.json.decode(data)
    body = msgspec.json.decode(base64.b64decode(envelope["body"]))
    body["role"] = "admin" if body["role"] != "admin" else "operator"
    envelope["body"] = msgspec.json.encode(body, order="sorted")
    with pytest.raises(BadSignature):
        open_operator_certificate(msgspec.json.encode(envelope, order="sorted"), rig.anchors())


def test_non_canonical_base64_malformed() -> None:
    data = issue_operator_certificate(_body(os.urandom(32)), rig.authority().sign)
    # The 64-byte signature's base64 ends in "==": its last character carries 4 unused bits.
    at = data.index(b'=="') - 1
    sloppy = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    assert msgspec.json.decode(sloppy) != msgspec.json.decode(data)  # different text...
    with pytest.raises(Malformed, match="canonical"):
        open_operator_certificate(sloppy, rig.anchors())


def test_garbage_certificate_malformed() -> None:
    for data in (b"", b"{}", b"[1]", b'{"body":"","signature":""}', b"\xff" * 40):
        with pytest.raises(Malformed):
            open_operator_certificate(data, rig.anchors())


def test_certificate_of_unknown_ca_unknown_signer() -> None:
    data = issue_operator_certificate(_body(os.urandom(32)), rig.authority().sign)
    with pytest.raises(UnknownSigner):
        open_operator_certificate(data, AnchorSet())


def test_certificate_when_ca_itself_expired_refused() -> None:
    data = issue_operator_certificate(_body(os.urandom(32)), rig.authority().sign)
    anchor = rig.anchors().keys[0]
    with pytest.raises(CertificateExpired, match="CA"):
        verify_operator_certificate(data, rig.anchors(), now_ms=anchor.not_after_ms + 1)
    bounded = AnchorSet((AnchorKey(anchor.public_key, 0, NOW_MS - 1),))
    with pytest.raises(CertificateExpired, match="CA"):
        verify_operator_certificate(data, bounded, now_ms=NOW_MS)


def test_anchor_validity_comes_from_ca_pem() -> None:
    anchor = parse_anchor_file(rig.authority().cert_pem().decode()).keys[0]
    cert = rig.authority().certificate
    assert anchor.not_before_ms == int(cert.not_valid_before_utc.timestamp() * 1000)
    assert anchor.not_after_ms == int(cert.not_valid_after_utc.timestamp() * 1000)


def test_unverified_certificate_reads_body_only() -> None:
    other = ca_mod.create_ca("other", now=dt.datetime.now(dt.UTC))
    seed = os.urandom(32)
    data = issue_operator_certificate(
        _body(seed, issuer=ca_issuer(other.public_key_raw)), other.sign
    )
    assert unverified_certificate(data).public_key == public_key_of(seed)


def _crl(number: int, **overrides: object) -> RevocationList:
    fields: dict[str, object] = {
        "issuer": ca_issuer(rig.authority().public_key_raw),
        "number": number,
        "issued_at_ms": NOW_MS,
        "serials": frozenset({7, 9}),
        "key_ids": frozenset({"ab" * 16}),
    }
    fields.update(overrides)
    return RevocationList(**fields)  # type: ignore[arg-type]


def test_revocation_list_roundtrip_feeds_revocations() -> None:
    data = issue_revocation_list(_crl(3), rig.authority().sign)
    crl = verify_revocation_list(data, rig.anchors(), last_number=2)
    revoked = Revocations.from_list(crl)
    assert revoked.serials == {7, 9} and revoked.key_ids == {"ab" * 16}


def test_revocation_list_same_number_accepted_again() -> None:
    data = issue_revocation_list(_crl(3), rig.authority().sign)
    assert verify_revocation_list(data, rig.anchors(), last_number=3).number == 3


def test_older_revocation_list_rollback() -> None:
    data = issue_revocation_list(_crl(2, serials=frozenset()), rig.authority().sign)
    with pytest.raises(Rollback):
        verify_revocation_list(data, rig.anchors(), last_number=3)


def test_revocation_list_signed_as_certificate_domain_refused() -> None:
    """A CA signature over a revocation list must not pass as a certificate, and back."""
    crl_bytes = issue_revocation_list(_crl(1), rig.authority().sign)
    with pytest.raises(BadSignature):  # the domain prefix differs
        open_operator_certificate(crl_bytes, rig.anchors())
    cert_bytes = issue_operator_certificate(_body(os.urandom(32)), rig.authority().sign)
    with pytest.raises(BadSignature):  # the domain prefix differs
        verify_revocation_list(cert_bytes, rig.anchors(), last_number=0)


def test_revocation_list_of_other_ca_refused() -> None:
    other = ca_mod.create_ca("other", now=dt.datetime.now(dt.UTC))
    forged = issue_revocation_list(_crl(99, serials=frozenset()), other.sign)  # claims ours
    with pytest.raises(BadSignature):
        verify_revocation_list(forged, rig.anchors(), last_number=1)
    unknown = issue_revocation_list(_crl(99, issuer=ca_issuer(other.public_key_raw)), other.sign)
    with pytest.raises(UnknownSigner):
        verify_revocation_list(unknown, rig.anchors(), last_number=1)


def _envelope(body: bytes, signature: bytes) -> bytes:
    return msgspec.json.encode({"body": body, "signature": signature}, order="sorted")


def test_ca_signature_without_domain_prefix_bad_signature() -> None:
    """A raw CA signature over the same bytes (as ``CertificateAuthority.sign`` gives for a
    device key) must not make a certificate."""
    body = msgspec.json.encode(_body(os.urandom(32)), order="sorted")
    with pytest.raises(BadSignature):
        open_operator_certificate(_envelope(body, rig.authority().sign(body)), rig.anchors())
    signed = rig.authority().sign(CERT_DOMAIN + body)
    assert open_operator_certificate(_envelope(body, signed), rig.anchors()).cert.name == "bob"


def test_ca_signed_body_with_wrong_key_id_malformed() -> None:
    """Revocation by key id relies on the key id naming the certified key."""
    body = msgspec.json.encode(_body(os.urandom(32), key_id="ab" * 16), order="sorted")
    data = _envelope(body, rig.authority().sign(CERT_DOMAIN + body))
    with pytest.raises(Malformed, match="key id"):
        open_operator_certificate(data, rig.anchors())


def _many_revoked(count: int) -> RevocationList:
    return _crl(
        count + 1,
        serials=frozenset(range(2**62, 2**62 + count)),
        key_ids=frozenset(f"{i:032x}" for i in range(count)),
    )


def test_revocation_list_of_a_thousand_keys_fits_and_verifies() -> None:
    data = issue_revocation_list(_many_revoked(1000), rig.authority().sign)
    crl = verify_revocation_list(data, rig.anchors(), last_number=0)
    assert len(crl.key_ids) == len(crl.serials) == 1000
    assert len(data) < 256 * 1024  # fits in welcome.revocations


def test_revocation_list_too_large_for_agents_refused_at_issue() -> None:
    with pytest.raises(Malformed, match="exceeds"):
        issue_revocation_list(_many_revoked(3000), rig.authority().sign)


def test_certificate_sized_like_a_revocation_list_is_refused() -> None:
    data = issue_revocation_list(_many_revoked(1000), rig.authority().sign)
    with pytest.raises(Malformed, match="too large"):
        open_operator_certificate(data, rig.anchors())
