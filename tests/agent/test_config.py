"""Agent settings: validated once, errors name the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmdeploy.agent.config import (
    AgentSettings,
    manager_host,
    parse_location,
    parse_size,
    parse_tags,
)
from swarmdeploy.agent.errors import ConfigError


def test_sizes_tags_locations_and_hosts_are_parsed() -> None:
    assert [parse_size(t, "--x") for t in ("512", "64k", "10M", "2GiB", "3 mb")] == [
        512,
        64 << 10,
        10 << 20,
        2 << 30,
        3 << 20,
    ]
    assert parse_tags(" a, b,,a ,c") == ("a", "b", "c")
    assert parse_location("-33.9,151.2") == (-33.9, 151.2)
    assert manager_host("https://[::1]:8443/base") == "::1"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"transport": "udp"}, "supported: zmq, http"),
        ({"proxy": "socks5h://tor:9050"}, "--proxy is not supported with --transport zmq"),
        ({"transport": "http", "proxy": "socks5://tor:9050"}, "must be socks5h://HOST:PORT"),
        ({"transport": "http", "proxy": "http://tor"}, "must be socks5h://HOST:PORT"),
        ({"transport": "http", "manager_url": "https://m:8443"}, "needs an http:// manager"),
        ({"tags": ("ok", "not ok")}, "--tags"),
        ({"chunk_window": 0}, "--chunk-window"),
        ({"stop_grace_s": -1.0}, "--stop-grace-s"),
        ({"reconnect_ivl_s": 5.0, "reconnect_ivl_max_s": 1.0}, "--reconnect-ivl-s"),
        ({"manager_url": "http://:80"}, "--manager"),
        ({"manager_url": "http://h:99999"}, "--manager"),
        ({"token": "x" * 65}, "--token"),
        ({"terminal": "yes"}, "--terminal must be one of off, sandboxed, root"),
        ({"on_revoked": "kill"}, "--on-revoked must be one of keep, stop"),
    ],
)
def test_invalid_settings_name_the_option(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        AgentSettings(data_dir=Path("/d"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["1,2,3", "north,east", "91,0"])
def test_bad_location_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--location"):
        parse_location(text)
