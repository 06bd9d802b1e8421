"""``swarmdeploy keys ca`` / ``keys ca-export`` against a real manager process on loopback."""

from __future__ import annotations

import json
import pathlib
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from swarmdeploy.cli.app import app, main
from tests.cli.manager_proc import running_manager


@dataclass(frozen=True)
class Manager:
    base: str
    key: str
    data_dir: pathlib.Path

    def args(self, *more: str, key: str | None = None) -> list[str]:
        return ["--url", self.base, "--api-key", key or self.key, *more]


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    data_dir = tmp_path_factory.mktemp("manager") / "data"
    with running_manager(data_dir, "--agent-link", "off") as (base, key):
        yield Manager(base, key, data_dir)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _passphrase_file(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "passphrase"
    path.write_text(text)
    return path


def _raw_public(key: object) -> bytes:
    assert isinstance(key, Ed25519PrivateKey)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_keys_ca_shows_the_managers_ca_pem_and_fingerprint(
    capsys: pytest.CaptureFixture[str], manager: Manager
) -> None:
    ca_pem = (manager.data_dir / "ca.pem").read_text()
    rc, out, _ = _run(capsys, manager.args("keys", "ca", "--pem"))
    assert rc == 0 and out == ca_pem
    rc, out, _ = _run(capsys, manager.args("-o", "json", "keys", "ca"))
    doc = json.loads(out)
    assert rc == 0 and doc["certificate"] == ca_pem
    fingerprint = x509.load_pem_x509_certificate(ca_pem.encode()).fingerprint(hashes.SHA256())
    assert doc["fingerprint"] == "sha256:" + fingerprint.hex()
    rc, out, _ = _run(capsys, manager.args("keys", "ca"))
    assert rc == 0 and doc["keyFingerprint"] in out


def test_ca_export_writes_0600_key_that_decrypts_to_the_ca(
    capsys: pytest.CaptureFixture[str], manager: Manager, tmp_path: pathlib.Path
) -> None:
    dest, pw = tmp_path / "ca-backup.key", _passphrase_file(tmp_path, "offline vault 1\n")
    argv = manager.args("keys", "ca-export", "--out", str(dest), "--passphrase-file", str(pw))
    rc, out, err = _run(capsys, argv)
    assert rc == 0, err
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    ca_pem = (manager.data_dir / "ca.pem").read_bytes()
    assert (tmp_path / "ca-backup.key.crt").read_bytes() == ca_pem
    key = serialization.load_pem_private_key(dest.read_bytes(), b"offline vault 1")
    ca_public = x509.load_pem_x509_certificate(ca_pem).public_key()
    assert _raw_public(key) == ca_public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert "offline vault" not in out and str(dest) in out
    before = dest.read_bytes()
    rc, _, err = _run(capsys, argv)
    assert rc == 2 and "exists" in err and dest.read_bytes() == before


def test_ca_export_prompts_for_the_passphrase_twice(
    manager: Manager, tmp_path: pathlib.Path
) -> None:
    dest, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    argv = manager.args("keys", "ca-export", "--out", str(dest), "--cert-out", str(crt))
    result = CliRunner().invoke(app, argv, input="typed secret 9\ntyped secret 9\n")
    assert result.exit_code == 0, result.output
    assert "typed secret" not in result.output
    assert _raw_public(serialization.load_pem_private_key(dest.read_bytes(), b"typed secret 9"))
    assert crt.read_bytes() == (manager.data_dir / "ca.pem").read_bytes()


def test_ca_export_with_a_short_passphrase_is_a_usage_error_writing_nothing(
    capsys: pytest.CaptureFixture[str], manager: Manager, tmp_path: pathlib.Path
) -> None:
    dest = tmp_path / "out.key"
    pw = _passphrase_file(tmp_path, "short\n")
    rc, _, err = _run(
        capsys, manager.args("keys", "ca-export", "--out", str(dest), "--passphrase-file", str(pw))
    )
    assert rc == 2 and "at least 8" in err
    assert not dest.exists()


def test_ca_export_by_an_operator_is_refused_writing_nothing(
    capsys: pytest.CaptureFixture[str], manager: Manager, tmp_path: pathlib.Path
) -> None:
    rc, out, _ = _run(
        capsys, manager.args("-o", "json", "keys", "create", "ops", "--role", "operator")
    )
    operator_key = json.loads(out)["key"]
    dest, pw = tmp_path / "out.key", _passphrase_file(tmp_path, "long enough pass")
    argv = ["keys", "ca-export", "--out", str(dest), "--passphrase-file", str(pw)]
    rc, _, err = _run(capsys, manager.args(*argv, key=operator_key))
    assert rc == 1 and "HTTP 403" in err and "admin" in err
    assert not dest.exists() and not (tmp_path / "out.key.crt").exists()
    rc, out, _ = _run(capsys, manager.args("keys", "ca", "--pem", key=operator_key))
    assert rc == 0 and "BEGIN CERTIFICATE" in out
