"""Trust anchors and manifest signatures (CRD-75/78) without an X.509 library."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from swarmdeploy.agent.errors import ConfigError
from swarmdeploy.agent.trust import (
    TrustAnchors,
    ca_matches,
    certificate_key,
    load_anchors,
    parse_anchors,
    pem_certificates,
    verify_signature,
)
from tests.agent.registration_server import new_ca


def test_certificate_key_is_the_ed25519_key_of_a_real_certificate() -> None:
    ca = new_ca()
    (der,) = pem_certificates(ca.cert_pem().decode())
    assert certificate_key(der) == ca.public_key_raw
    assert certificate_key(b"not a certificate") is None


def test_anchor_file_mixes_certificates_keys_and_comments(tmp_path: Path) -> None:
    ca = new_ca()
    raw = bytes(SigningKey.generate().verify_key)
    path = tmp_path / "anchors"
    path.write_text(
        f"# pinned CA\n{ca.cert_pem().decode()}\n{base64.b64encode(raw).decode()}  # op\n"
    )
    anchors = load_anchors(path)
    assert anchors.keys == (ca.public_key_raw, raw) and len(anchors.certificates) == 1
    assert ca_matches(anchors, ca.cert_pem().decode())
    assert not ca_matches(anchors, new_ca().cert_pem().decode())
    assert ca_matches(TrustAnchors(), "anything: nothing pinned")


@pytest.mark.parametrize("text", ["garbage line\n", "# only a comment\n"])
def test_unusable_anchor_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "anchors"
    path.write_text(text)
    with pytest.raises(ConfigError, match="--trust-anchor"):
        load_anchors(path)
    with pytest.raises(ConfigError, match="--trust-anchor"):
        load_anchors(tmp_path / "missing")


def test_signature_verifies_only_with_an_anchor_key() -> None:
    signer, other = SigningKey.generate(), SigningKey.generate()
    message = b'{"task_id":"t1"}'
    signature = signer.sign(message).signature
    anchors = TrustAnchors().with_key(bytes(other.verify_key)).with_key(bytes(signer.verify_key))
    assert verify_signature(message, signature, anchors)
    assert not verify_signature(message + b" ", signature, anchors)
    assert not verify_signature(message, signature[:-1], anchors)
    assert not verify_signature(message, signature, TrustAnchors())
    assert parse_anchors("").keys == ()
