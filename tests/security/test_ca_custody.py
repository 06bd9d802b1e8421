"""Custody of the deployment CA key (issue 5): encrypted at rest, migrated from plaintext,
exported only to admins and only encrypted, imported only when key and certificate belong
together.

Each test fails if its defence is removed: a plaintext ``ca.key`` (``test_ca_key_on_disk…``),
no migration (``test_plaintext_ca_key…``), no role check on the export
(``test_operator_and_viewer…``), an export that is not the CA's key or not encrypted
(``test_export_round_trip…``), an import without the key/certificate check
(``test_import_of_a_mismatched…``) or without the overwrite guard
(``test_import_over_another_ca…``).
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto import keyenc
from swarmdeploy.crypto.rejections import DecryptionFailed
from swarmdeploy.manager.app import create_app
from swarmdeploy.manager.keystore import (
    KeystoreError,
    load_or_create_keys,
    prepare_data_dir,
    write_new_file,
)
from swarmdeploy.manager.main import main
from swarmdeploy.manager.settings import Role
from tests.manager.conftest import Api, make_settings, running_api

NOW = dt.datetime.now(dt.UTC)


def _public_of_pem(pem: bytes, passphrase: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, passphrase)
    assert isinstance(key, Ed25519PrivateKey)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _ca_pem_public(data_dir: Path) -> bytes:
    cert = x509.load_pem_x509_certificate((data_dir / "ca.pem").read_bytes())
    return cert.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


async def test_ca_key_on_disk_is_not_plaintext_and_needs_the_secret(
    api: Api, tmp_path: Path
) -> None:
    data = api.settings.data_dir
    seed = api.services.keys.ca.seed
    raw = (data / "ca.key").read_bytes()
    for form in (seed, seed.hex().encode(), base64.b64encode(seed)):
        assert form not in raw
    assert b"PRIVATE KEY" not in raw
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(raw, None)
    with pytest.raises(DecryptionFailed):
        keyenc.decrypt_seed(raw.decode(), key=bytes(32))
    stolen = tmp_path / "stolen"  # ca.key and ca.pem without the right secret.key
    prepare_data_dir(stolen)
    for name in ("ca.key", "ca.pem"):
        shutil.copy(data / name, stolen / name)
    with pytest.raises(KeystoreError, match=r"cannot decrypt .*ca\.key"):
        load_or_create_keys(stolen, now=NOW)


async def test_plaintext_ca_key_of_an_older_version_is_encrypted_at_start(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    old = ca_mod.create_ca("older version's CA", now=NOW)
    prepare_data_dir(settings.data_dir)
    write_new_file(settings.data_dir / "ca.key", old.key_pem(), mode=0o600)
    write_new_file(settings.data_dir / "ca.pem", old.cert_pem(), mode=0o644)
    async with running_api(settings) as api:
        doc = (await api.client.get("/ca")).json()
    assert doc["fingerprint"] == old.fingerprint
    assert (settings.data_dir / "ca.pem").read_bytes() == old.cert_pem()
    text = (settings.data_dir / "ca.key").read_text()
    assert "PRIVATE KEY" not in text and old.seed.hex() not in text
    assert load_or_create_keys(settings.data_dir, now=NOW).ca.seed == old.seed


@pytest.mark.parametrize("role", ["operator", "viewer"])
async def test_operator_and_viewer_cannot_export_the_ca_key(api: Api, role: Role) -> None:
    headers = await api.headers_for(role, name=f"mallory-{role}")
    r = await api.client.post("/ca/export", json={"passphrase": "mallory's pass"}, headers=headers)
    assert r.status_code == 403
    assert "PRIVATE KEY" not in r.text
    assert (await api.client.get("/ca", headers=headers)).status_code == 200


async def test_export_round_trip_decrypts_to_the_ca_pem_key_and_restores(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = await api.client.post("/ca/export", json={"passphrase": "kept in the safe"})
    assert r.status_code == 200
    doc = r.json()
    ca_pem = (api.settings.data_dir / "ca.pem").read_bytes()
    assert doc["certificate"].encode() == ca_pem
    exported = doc["privateKey"].encode()
    assert _public_of_pem(exported, b"kept in the safe") == _ca_pem_public(api.settings.data_dir)
    with pytest.raises((TypeError, ValueError)):
        serialization.load_pem_private_key(exported, None)
    key_file, cert_file, pass_file = (tmp_path / n for n in ("ca.key.pem", "ca.crt", "pass"))
    key_file.write_bytes(exported)
    cert_file.write_bytes(ca_pem)
    pass_file.write_text("kept in the safe\n")
    restored = tmp_path / "restored"
    argv = ["--data-dir", str(restored), "--import-ca", str(key_file), str(cert_file)]
    assert main([*argv, "--import-ca-passphrase-file", str(pass_file)]) == 0
    assert doc["fingerprint"] in capsys.readouterr().out
    assert (restored / "ca.pem").read_bytes() == ca_pem
    assert load_or_create_keys(restored, now=NOW).ca.seed == api.services.keys.ca.seed


def test_import_of_a_mismatched_key_and_certificate_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = ca_mod.create_ca("one", now=NOW), ca_mod.create_ca("two", now=NOW)
    (tmp_path / "one.key").write_bytes(one.key_pem())
    (tmp_path / "two.pem").write_bytes(two.cert_pem())
    data = tmp_path / "data"
    argv = ["--data-dir", str(data), "--import-ca", str(tmp_path / "one.key")]
    assert main([*argv, str(tmp_path / "two.pem")]) == 1
    assert "does not belong to the CA certificate" in capsys.readouterr().err
    assert not (data / "ca.key").exists() and not (data / "ca.pem").exists()


def test_import_over_another_ca_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    prepare_data_dir(data)
    current = load_or_create_keys(data, now=NOW).ca
    new = ca_mod.create_ca("replacement", now=NOW)
    (tmp_path / "new.key").write_bytes(new.key_pem())
    (tmp_path / "new.pem").write_bytes(new.cert_pem())
    argv = ["--data-dir", str(data), "--import-ca", str(tmp_path / "new.key")]
    argv.append(str(tmp_path / "new.pem"))
    assert main(argv) == 1
    assert "--force" in capsys.readouterr().err
    assert load_or_create_keys(data, now=NOW).ca.seed == current.seed
    assert main([*argv, "--force"]) == 0
    assert load_or_create_keys(data, now=NOW).ca.seed == new.seed
    kept = sorted(p.name.split(".replaced-")[0] for p in data.glob("*.replaced-*"))
    assert kept == ["ca.key", "ca.pem"]


def test_import_options_without_import_ca_are_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data-dir", str(tmp_path), "--force"]) == 2
    assert "need --import-ca" in capsys.readouterr().err


async def test_passphrase_option_encrypts_the_imported_ca_and_the_manager_needs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = ca_mod.create_ca("offline CA", now=NOW)
    (tmp_path / "k.pem").write_bytes(authority.key_pem())
    (tmp_path / "c.pem").write_bytes(authority.cert_pem())
    secret_file = tmp_path / "ca-pass"
    secret_file.write_text("at-rest passphrase\n")
    settings = make_settings(tmp_path, ca_passphrase_file=secret_file)
    argv = ["--data-dir", str(settings.data_dir), "--ca-passphrase-file", str(secret_file)]
    assert main([*argv, "--import-ca", str(tmp_path / "k.pem"), str(tmp_path / "c.pem")]) == 0
    text = (settings.data_dir / "ca.key").read_text()
    assert keyenc.describe(text).kdf == "argon2id"
    assert keyenc.decrypt_seed(text, passphrase="at-rest passphrase") == authority.seed
    async with running_api(settings) as api:
        assert (await api.client.get("/ca")).json()["fingerprint"] == authority.fingerprint
    with pytest.raises(KeystoreError, match=r"ca\.key is encrypted with a passphrase"):
        create_app(make_settings(tmp_path))
