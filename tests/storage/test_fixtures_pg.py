"""The PostgreSQL test-server helper: binary discovery and the skip-or-fail rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_pg import PgUnavailable, find_pg_bin, unavailable


def _fake_version(root: Path, version: str) -> Path:
    bin_dir = root / version / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "initdb").touch()
    return bin_dir


def test_find_pg_bin_picks_newest_version_numerically(tmp_path: Path) -> None:
    _fake_version(tmp_path, "9")
    newest = _fake_version(tmp_path, "15")
    (tmp_path / "16").mkdir()  # no binaries: ignored
    assert find_pg_bin(tmp_path) == newest


def test_find_pg_bin_without_binaries_raises(tmp_path: Path) -> None:
    with pytest.raises(PgUnavailable, match="apt install postgresql"):
        find_pg_bin(tmp_path / "none")


def test_missing_postgres_in_ci_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        unavailable("no binaries")


def test_missing_postgres_outside_ci_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no binaries"):
        unavailable("no binaries")
