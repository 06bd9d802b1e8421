"""Private keys encrypted at rest: round trips, wrong secrets and modified files refused."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto import keyenc
from swarmdeploy.crypto.errors import InvalidKey
from swarmdeploy.crypto.operator import public_key_of
from swarmdeploy.crypto.rejections import DecryptionFailed

#: Argon2id at its minimum cost: the tests check the format, not the cost.
FAST = keyenc.KdfParams(ops=1, mem_bytes=8192)
SEED = bytes(range(32))


def _locked(passphrase: str = "correct horse", comment: str = "alice") -> str:
    return keyenc.encrypt_with_passphrase(SEED, passphrase, comment=comment, kdf=FAST)


def _replace_line(text: str, prefix: str, new: str) -> str:
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    lines[at] = new
    return "\n".join(lines) + "\n"


def test_passphrase_roundtrip_returns_seed() -> None:
    text = _locked()
    assert text.startswith(keyenc.BEGIN) and "Version: 1" in text
    assert keyenc.decrypt_seed(text, passphrase="correct horse") == SEED


def test_wrong_passphrase_decryption_failed() -> None:
    with pytest.raises(DecryptionFailed, match="wrong passphrase"):
        keyenc.decrypt_seed(_locked(), passphrase="correct horse.")


def test_modified_header_decryption_failed() -> None:
    text = _replace_line(_locked(), "Comment:", "Comment: mallory")
    with pytest.raises(DecryptionFailed):
        keyenc.decrypt_seed(text, passphrase="correct horse")


def test_swapped_public_key_header_decryption_failed() -> None:
    other = keyenc.describe(keyenc.encrypt_with_passphrase(os.urandom(32), "x", kdf=FAST))
    text = _replace_line(_locked(), "Public-Key:", "Public-Key: " + _b64(other.public_key))
    with pytest.raises(DecryptionFailed):
        keyenc.decrypt_seed(text, passphrase="correct horse")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_modified_ciphertext_decryption_failed() -> None:
    lines = _locked().splitlines()
    body = lines[-2]
    lines[-2] = body[:5] + ("A" if body[5] != "A" else "B") + body[6:]
    with pytest.raises(DecryptionFailed):
        keyenc.decrypt_seed("\n".join(lines), passphrase="correct horse")


def test_crlf_line_endings_still_decrypt() -> None:
    text = _locked().replace("\n", "\r\n")
    assert keyenc.decrypt_seed(text, passphrase="correct horse") == SEED


def test_secret_store_key_roundtrip_and_wrong_key() -> None:
    key = os.urandom(32)
    text = keyenc.encrypt_with_key(SEED, key, key_label="secret.key#1")
    assert keyenc.decrypt_seed(text, key=key) == SEED
    with pytest.raises(DecryptionFailed):
        keyenc.decrypt_seed(text, key=os.urandom(32))


def test_passphrase_for_secret_store_key_names_the_label() -> None:
    text = keyenc.encrypt_with_key(SEED, os.urandom(32), key_label="secret.key#1")
    with pytest.raises(DecryptionFailed, match=re.escape("secret.key#1")):
        keyenc.decrypt_seed(text, passphrase="anything")


def test_key_for_passphrase_file_refused() -> None:
    with pytest.raises(DecryptionFailed, match="passphrase"):
        keyenc.decrypt_seed(_locked(), key=os.urandom(32))


def test_describe_reads_headers_without_secret() -> None:
    info = keyenc.describe(_locked(comment="operator alice"))
    assert info.public_key == public_key_of(SEED)
    assert info.comment == "operator alice"
    assert (info.kdf, info.kdf_params, info.version) == ("argon2id", FAST, 1)


def test_each_export_is_fresh() -> None:
    assert _locked() != _locked()  # new salt and nonce every time


def test_default_cost_is_argon2id_moderate() -> None:
    assert keyenc.DEFAULT_KDF.mem_bytes >= 256 * 1024 * 1024
    assert keyenc.DEFAULT_KDF.ops >= 3


@pytest.mark.parametrize(
    ("prefix", "line"),
    [
        ("Version:", "Version: 2"),
        ("KDF:", "KDF: scrypt"),
        ("KDF-Mem:", "KDF-Mem: 99999999999"),  # a file must not make us allocate 100 GB
        ("KDF-Ops:", "KDF-Ops: 0"),
        ("Salt:", "Salt: AAAA"),
    ],
)
def test_unsupported_or_hostile_parameters_invalid_key(prefix: str, line: str) -> None:
    with pytest.raises(InvalidKey):
        keyenc.decrypt_seed(_replace_line(_locked(), prefix, line), passphrase="correct horse")


@pytest.mark.parametrize(
    "text",
    ["", "hello", f"{keyenc.BEGIN}\n{keyenc.END}\n", _locked().replace("\n\n", "\n")],
)
def test_not_an_encrypted_key_invalid_key(text: str) -> None:
    with pytest.raises(InvalidKey):
        keyenc.decrypt_seed(text, passphrase="x")


def test_empty_passphrase_and_multiline_comment_refused() -> None:
    with pytest.raises(ValueError, match="passphrase"):
        keyenc.encrypt_with_passphrase(SEED, "", kdf=FAST)
    with pytest.raises(ValueError, match="comment"):
        keyenc.encrypt_with_passphrase(SEED, "x", comment="a\nVersion: 9", kdf=FAST)


def test_ca_key_from_cryptography_survives_encryption() -> None:
    """The manager's CA key (``cryptography``) can be kept encrypted and loaded back."""
    authority = ca_mod.create_ca("ca", now=dt.datetime.now(dt.UTC))
    seed = authority.key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    text = keyenc.encrypt_with_passphrase(seed, "offline vault", kdf=FAST)
    back = Ed25519PrivateKey.from_private_bytes(
        keyenc.decrypt_seed(text, passphrase="offline vault")
    )
    raw = back.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == authority.public_key_raw
