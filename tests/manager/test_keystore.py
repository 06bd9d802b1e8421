"""Key material in the data directory: created once with tight modes, reused, never replaced."""

from __future__ import annotations

import datetime as dt
import logging
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto import keyenc
from swarmdeploy.manager.keystore import (
    CA_SEAL_LABEL,
    KeystoreError,
    ca_seal_key,
    import_ca,
    load_or_create_keys,
    prepare_data_dir,
    read_passphrase_file,
    resolve_admin_key,
    write_new_file,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_files_with_private_modes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    prepare_data_dir(data)
    load_or_create_keys(data, now=NOW)
    assert _mode(data) == 0o700
    for name in ("curve.key", "ca.key", "secret.key"):
        assert _mode(data / name) == 0o600, name
    assert _mode(data / "ca.pem") == 0o644


def test_second_start_loads_the_same_keys(tmp_path: Path) -> None:
    one = load_or_create_keys(tmp_path, now=NOW)
    two = load_or_create_keys(tmp_path, now=NOW)
    assert one.curve == two.curve and one.secret == two.secret
    assert one.ca.cert_pem() == two.ca.cert_pem()


def test_wide_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "open"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    prepare_data_dir(data)
    assert _mode(data) == 0o700


def test_corrupt_curve_key_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "curve.key").write_text("garbage")
    with pytest.raises(KeystoreError, match="unusable"):
        load_or_create_keys(tmp_path, now=NOW)


def test_missing_ca_certificate_with_key_refuses(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path, now=NOW)
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(KeystoreError, match=r"ca\.pem is missing"):
        load_or_create_keys(tmp_path, now=NOW)


def test_write_new_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert write_new_file(path, b"one", mode=0o600)
    assert not write_new_file(path, b"two", mode=0o600)
    assert path.read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_admin_key_generated_once_then_read(tmp_path: Path) -> None:
    first = resolve_admin_key(tmp_path, None)
    assert first.generated and len(first.value) >= 32
    assert _mode(tmp_path / "admin.key") == 0o600
    second = resolve_admin_key(tmp_path, None)
    assert not second.generated and second.value == first.value


def test_configured_admin_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    key = resolve_admin_key(tmp_path, "configured-key-12345")
    assert key.value == "configured-key-12345" and not key.generated
    assert not (tmp_path / "admin.key").exists()


# -- the CA key at rest (issue 5: "stored encrypted at rest") ---------------------------------
#: Argon2id at its minimum cost: these tests check custody, not the cost.
FAST = keyenc.KdfParams(ops=1, mem_bytes=8192)


def _passphrase_file(tmp_path: Path, text: str = "ca passphrase 1\n") -> Path:
    path = tmp_path / f"pass-{len(list(tmp_path.glob('pass-*')))}"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_new_ca_key_is_sealed_with_secret_key_not_pkcs8(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path, now=NOW)
    text = (tmp_path / "ca.key").read_text()
    info = keyenc.describe(text)
    assert info.kdf == "none" and info.key_label == CA_SEAL_LABEL
    assert info.public_key == keys.ca.public_key_raw
    assert "PRIVATE KEY" not in text and keys.ca.seed.hex() not in text
    assert keyenc.decrypt_seed(text, key=ca_seal_key(keys.secret)) == keys.ca.seed


def test_ca_key_with_another_secret_key_is_refused_naming_the_file(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path, now=NOW)
    before = (tmp_path / "ca.key").read_bytes()
    (tmp_path / "secret.key").write_text("ab" * 32)
    with pytest.raises(KeystoreError, match=r"cannot decrypt .*ca\.key: .*secret\.key"):
        load_or_create_keys(tmp_path, now=NOW)
    assert (tmp_path / "ca.key").read_bytes() == before


def test_modified_ca_key_is_refused(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path, now=NOW)
    path = tmp_path / "ca.key"
    path.write_text(path.read_text().replace("Comment: swarmdeploy CA", "Comment: other CA"))
    with pytest.raises(KeystoreError, match=r"cannot decrypt .*ca\.key"):
        load_or_create_keys(tmp_path, now=NOW)


def test_ca_key_that_is_not_a_key_is_refused_naming_the_file(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path, now=NOW)
    (tmp_path / "ca.key").write_text("garbage\n")
    with pytest.raises(KeystoreError, match=r"ca\.key is not .*encrypted CA key"):
        load_or_create_keys(tmp_path, now=NOW)


def test_plaintext_ca_key_of_an_older_version_is_encrypted_in_place_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = ca_mod.create_ca("old CA", now=NOW)
    write_new_file(tmp_path / "ca.key", old.key_pem(), mode=0o600)
    write_new_file(tmp_path / "ca.pem", old.cert_pem(), mode=0o644)
    with caplog.at_level(logging.WARNING, logger="swarmdeploy.manager.keystore"):
        first = load_or_create_keys(tmp_path, now=NOW)
        second = load_or_create_keys(tmp_path, now=NOW)
    assert first.ca.seed == second.ca.seed == old.seed
    assert (tmp_path / "ca.pem").read_bytes() == old.cert_pem()
    text = (tmp_path / "ca.key").read_text()
    assert keyenc.describe(text).kdf == "none" and old.seed.hex() not in text
    assert _mode(tmp_path / "ca.key") == 0o600
    assert sum("plaintext" in m for m in caplog.messages) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_plaintext_ca_key_of_another_certificate_is_left_untouched(tmp_path: Path) -> None:
    one, two = ca_mod.create_ca("one", now=NOW), ca_mod.create_ca("two", now=NOW)
    write_new_file(tmp_path / "ca.key", one.key_pem(), mode=0o600)
    write_new_file(tmp_path / "ca.pem", two.cert_pem(), mode=0o644)
    with pytest.raises(KeystoreError, match=r"ca\.key and .*ca\.pem: .*does not belong"):
        load_or_create_keys(tmp_path, now=NOW)
    assert (tmp_path / "ca.key").read_bytes() == one.key_pem()


def test_passphrase_encrypts_the_ca_key_and_is_needed_to_start(tmp_path: Path) -> None:
    pw = _passphrase_file(tmp_path)
    data = tmp_path / "data"
    prepare_data_dir(data)
    keys = load_or_create_keys(data, now=NOW, ca_passphrase_file=pw, ca_kdf=FAST)
    text = (data / "ca.key").read_text()
    assert keyenc.describe(text).kdf == "argon2id"
    assert keyenc.decrypt_seed(text, passphrase="ca passphrase 1") == keys.ca.seed
    again = load_or_create_keys(data, now=NOW, ca_passphrase_file=pw, ca_kdf=FAST)
    assert again.ca.seed == keys.ca.seed
    with pytest.raises(KeystoreError, match=r"ca\.key is encrypted with a passphrase.*--ca-pass"):
        load_or_create_keys(data, now=NOW)
    wrong = _passphrase_file(tmp_path, "another one")
    with pytest.raises(KeystoreError, match=r"cannot decrypt .*ca\.key: wrong CA passphrase"):
        load_or_create_keys(data, now=NOW, ca_passphrase_file=wrong, ca_kdf=FAST)
    assert (data / "ca.key").read_text() == text


def test_secret_sealed_ca_key_is_re_encrypted_once_a_passphrase_is_given(tmp_path: Path) -> None:
    data = tmp_path / "data"
    prepare_data_dir(data)
    keys = load_or_create_keys(data, now=NOW)
    pw = _passphrase_file(tmp_path)
    again = load_or_create_keys(data, now=NOW, ca_passphrase_file=pw, ca_kdf=FAST)
    assert again.ca.seed == keys.ca.seed
    assert keyenc.describe((data / "ca.key").read_text()).kdf == "argon2id"


def test_empty_or_missing_passphrase_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="is empty"):
        load_or_create_keys(tmp_path, now=NOW, ca_passphrase_file=_passphrase_file(tmp_path, "\n"))
    with pytest.raises(KeystoreError, match="cannot read the passphrase file"):
        read_passphrase_file(tmp_path / "absent")
    assert read_passphrase_file(_passphrase_file(tmp_path, "a b \r\n")) == "a b "


# -- importing a CA ---------------------------------------------------------------------------
def _self_signed(
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
    *,
    ca: bool = True,
    days: int = 365,
    start: dt.datetime = NOW,
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imported CA")])
    algorithm = hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey) else None
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start - dt.timedelta(days=1))
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, algorithm=algorithm)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _pkcs8(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_import_into_an_empty_data_dir_installs_it_encrypted(tmp_path: Path) -> None:
    authority = ca_mod.create_ca("offline CA", now=NOW)
    data = tmp_path / "data"
    result = import_ca(data, authority.key_pem(), authority.cert_pem(), now=NOW)
    assert result.fingerprint == authority.fingerprint and not result.already_current
    assert result.set_aside == ()
    assert (data / "ca.pem").read_bytes() == authority.cert_pem()
    assert keyenc.describe((data / "ca.key").read_text()).kdf == "none"
    assert load_or_create_keys(data, now=NOW).ca.seed == authority.seed
    assert _mode(data / "ca.key") == 0o600 and _mode(data / "ca.pem") == 0o644


def test_import_of_an_exported_key_with_its_passphrase(tmp_path: Path) -> None:
    authority = ca_mod.create_ca("offline CA", now=NOW)
    exported = authority.export_key_pem("vault passphrase", iterations=1000)
    pw = _passphrase_file(tmp_path)
    result = import_ca(
        tmp_path / "data",
        exported,
        authority.cert_pem(),
        now=NOW,
        key_passphrase="vault passphrase",
        ca_passphrase_file=pw,
        ca_kdf=FAST,
    )
    assert result.fingerprint == authority.fingerprint
    keys = load_or_create_keys(tmp_path / "data", now=NOW, ca_passphrase_file=pw, ca_kdf=FAST)
    assert keys.ca.seed == authority.seed
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        import_ca(tmp_path / "d2", exported, authority.cert_pem(), now=NOW, key_passphrase="no")
    with pytest.raises(KeystoreError, match="Password was not given"):
        import_ca(tmp_path / "d3", exported, authority.cert_pem(), now=NOW)


def test_import_of_the_current_ca_only_re_encrypts(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path, now=NOW)
    (tmp_path / "ca.key").write_bytes(keys.ca.key_pem())  # as an older version left it
    result = import_ca(tmp_path, keys.ca.key_pem(), keys.ca.cert_pem(), now=NOW)
    assert result.already_current and result.set_aside == ()
    assert keyenc.describe((tmp_path / "ca.key").read_text()).kdf == "none"


def test_import_over_another_ca_needs_force_and_keeps_the_old_one(tmp_path: Path) -> None:
    old = load_or_create_keys(tmp_path, now=NOW).ca
    old_key, old_cert = (tmp_path / "ca.key").read_bytes(), (tmp_path / "ca.pem").read_bytes()
    new = ca_mod.create_ca("new CA", now=NOW)
    with pytest.raises(KeystoreError, match=f"another CA \\({old.fingerprint}\\).*--force"):
        import_ca(tmp_path, new.key_pem(), new.cert_pem(), now=NOW)
    assert (tmp_path / "ca.key").read_bytes() == old_key
    assert (tmp_path / "ca.pem").read_bytes() == old_cert
    result = import_ca(tmp_path, new.key_pem(), new.cert_pem(), now=NOW, force=True)
    assert {p.read_bytes() for p in result.set_aside} == {old_key, old_cert}
    assert all(".replaced-20260101T000000Z-" in p.name for p in result.set_aside)
    assert load_or_create_keys(tmp_path, now=NOW).ca.seed == new.seed


def test_import_refuses_a_key_of_another_certificate(tmp_path: Path) -> None:
    one, two = ca_mod.create_ca("one", now=NOW), ca_mod.create_ca("two", now=NOW)
    with pytest.raises(KeystoreError, match="does not belong to the CA certificate"):
        import_ca(tmp_path, one.key_pem(), two.cert_pem(), now=NOW)
    assert list(tmp_path.iterdir()) == []


def test_import_refuses_a_non_ed25519_ca(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KeystoreError, match="not an Ed25519 key"):
        import_ca(tmp_path, _pkcs8(key), _self_signed(key), now=NOW)


def test_import_refuses_a_certificate_that_is_not_a_ca(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(KeystoreError, match="not a CA"):
        import_ca(tmp_path, _pkcs8(key), _self_signed(key, ca=False), now=NOW)


def test_import_refuses_an_expired_ca(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    cert = _self_signed(key, start=NOW - dt.timedelta(days=400), days=30)
    with pytest.raises(KeystoreError, match="not valid now"):
        import_ca(tmp_path, _pkcs8(key), cert, now=NOW)


def test_import_refuses_what_is_not_pem(tmp_path: Path) -> None:
    authority = ca_mod.create_ca("one", now=NOW)
    with pytest.raises(KeystoreError, match="cannot load the CA key"):
        import_ca(tmp_path, b"not a key", authority.cert_pem(), now=NOW)
    with pytest.raises(KeystoreError, match="not a PEM certificate"):
        import_ca(tmp_path, authority.key_pem(), b"not a certificate", now=NOW)
