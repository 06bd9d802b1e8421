"""The GUI is served at /ui by ``swarmdeploy manager`` and absent with ``--no-gui``."""

from __future__ import annotations

import pathlib

import httpx

from swarmdeploy.manager.main import parse_options
from tests.cli.manager_proc import free_port, running_manager


def _ports() -> list[str]:
    return ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]


def test_gui_flag_defaults_on_and_no_gui_or_environment_turn_it_off() -> None:
    assert parse_options([], {})["gui"] is True
    assert parse_options(["--no-gui"], {})["gui"] is False
    assert parse_options([], {"SWARMDEPLOY_GUI": "off"})["gui"] is False


def test_no_gui_serves_the_api_only(tmp_path: pathlib.Path) -> None:
    with running_manager(tmp_path / "m", "--no-gui", *_ports()) as (base, key):
        assert httpx.get(f"{base}/ui/signin").status_code == 404
        assert httpx.get(f"{base}/").status_code == 404
        who = httpx.get(f"{base}/rpc/whoami", headers={"Authorization": f"Bearer {key}"})
        assert who.json()["role"] == "admin"


def test_gui_root_redirect_is_relative_whatever_the_host_header(tmp_path: pathlib.Path) -> None:
    with running_manager(tmp_path / "m", *_ports()) as (base, _):
        answer = httpx.get(f"{base}/", headers={"Host": "evil.example"})
        assert answer.status_code == 307 and answer.headers["location"] == "/ui/"
        assert httpx.get(f"{base}/ui/signin").status_code == 200
        assert "/ui" not in httpx.get(f"{base}/openapi.json").text  # not an API path
