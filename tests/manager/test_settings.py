"""Settings are validated once, with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmdeploy.manager.settings import SettingsError, load_settings, parse_role_map


def test_defaults_match_the_original_ports(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert (s.http_port, s.zmq_pub_port, s.zmq_sub_port, s.bind) == (8080, 5556, 5557, "127.0.0.1")
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'swarmdeploy.db'}"
    assert s.token_expiry_s == 7 * 24 * 3600


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    with pytest.raises(ValueError):
        s.http_port = 1  # type: ignore[misc]


def test_every_bad_value_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(data_dir=tmp_path, http_port=70000, bind="not a host!", admin_key="short")
    text = str(info.value)
    assert "http_port" in text and "bind" in text and "admin_key" in text


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"http_port": 5556}, "must all differ"),
        ({"oidc_issuer": "https://idp"}, "OpenID Connect needs"),
        ({"database": "mysql://x"}, "database"),
        ({"oidc_jwks_url": "ftp://x", "oidc_issuer": "https://i", "oidc_audience": "a"}, "URL"),
        ({"max_body_bytes": 10_000_000, "max_task_body_bytes": 5_000_000}, "at least"),
        ({"oidc_role_map": {"ops": "root"}}, "oidc_role_map"),
        ({"log_level": "LOUD"}, "log_level"),
    ],
)
def test_invalid_combinations_refused(
    tmp_path: Path, values: dict[str, object], needle: str
) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(data_dir=tmp_path, **values)


def test_postgres_url_accepted(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, database="postgresql://u@127.0.0.1/db")
    assert s.database_url == "postgresql://u@127.0.0.1/db"


def test_role_map_parses_value_role_pairs() -> None:
    assert parse_role_map("ops=operator, a=b=admin,,") == {"ops": "operator", "a=b": "admin"}
    with pytest.raises(SettingsError):
        parse_role_map("no-equals-sign")
