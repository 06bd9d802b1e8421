"""CurveZMQ keys: validation of Z85 text and the key-file format."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq.auth

from swarmdeploy.crypto import curve
from swarmdeploy.crypto.errors import InvalidKey


def test_generate_keypair_public_matches_secret() -> None:
    pair = curve.generate_keypair()
    assert curve.public_from_secret(pair.secret) == pair.public
    assert curve.validate_public_key(pair.public) == pair.public


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "short",
        "0" * 40,  # all-zero key
        "~" * 40,  # not in the Z85 alphabet
        "#" * 40,  # decodes to values >= 2**32
        "x" * 41,
    ],
)
def test_validate_public_key_malformed_raises(bad: str) -> None:
    with pytest.raises(InvalidKey):
        curve.validate_public_key(bad)


def test_keyfile_round_trip_keeps_both_keys() -> None:
    pair = curve.generate_keypair()
    assert curve.decode_keyfile(curve.encode_keyfile(pair)) == pair


def test_keyfile_public_only_has_no_secret() -> None:
    pair = curve.generate_keypair()
    text = curve.encode_keyfile(curve.CurveKeyPair(public=pair.public))
    assert "secret-key" not in text
    assert curve.decode_keyfile(text) == curve.CurveKeyPair(public=pair.public)


def test_keyfile_is_readable_by_pyzmq(tmp_path: Path) -> None:
    pair = curve.generate_keypair()
    path = tmp_path / "manager.key_secret"
    path.write_text(curve.encode_keyfile(pair))
    public, secret = zmq.auth.load_certificate(str(path))
    assert public.decode() == pair.public
    assert secret is not None and secret.decode() == pair.secret


def test_keyfile_mismatched_secret_refused() -> None:
    one, two = curve.generate_keypair(), curve.generate_keypair()
    text = curve.encode_keyfile(curve.CurveKeyPair(public=one.public, secret=two.secret))
    with pytest.raises(InvalidKey, match="does not belong"):
        curve.decode_keyfile(text)


def test_keyfile_without_public_key_refused() -> None:
    with pytest.raises(InvalidKey):
        curve.decode_keyfile("metadata\ncurve\n")
