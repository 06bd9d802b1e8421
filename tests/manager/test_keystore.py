"""Key material in the data directory: created once with tight modes, reused, never replaced."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest

from swarmdeploy.manager.keystore import (
    KeystoreError,
    load_or_create_keys,
    prepare_data_dir,
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
