"""The layout's pure parts: the unit, environment lines, ``--exec``."""

from __future__ import annotations

import pathlib

import pytest

from swarmdeploy.agent.provision.layout import (
    PACKAGED_EXEC,
    AgentConfig,
    LayoutError,
    agent_env,
    agent_unit,
    check_exec,
    env_line,
    token_env,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_shipped_unit_is_the_one_install_writes() -> None:
    shipped = (ROOT / "deploy/systemd/swarmdeploy-agent.service").read_bytes()
    assert shipped == agent_unit(PACKAGED_EXEC).content


def test_unit_restarts_on_failure_with_watchdog_and_keeps_the_agent_able_to_work() -> None:
    settings = _unit_settings(agent_unit("/usr/bin/swarmdeploy").content.decode())
    assert settings["Type"] == ["notify"] and settings["WatchdogSec"] == ["30"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["ExecStart"] == [
        "/usr/bin/swarmdeploy agent --data-dir /var/lib/swarmdeploy-agent"
    ]
    assert settings["EnvironmentFile"] == [
        "-/etc/swarmdeploy/agent.env",
        "-/etc/swarmdeploy/token.env",
    ]
    assert settings["StateDirectory"] == ["swarmdeploy-agent"]
    # root, deliberately: the sandbox separates tasks (uid 65534) from the agent's keys
    assert settings["StateDirectoryMode"] == ["0700"] and "User" not in settings
    assert settings["KillMode"] == ["mixed"]
    # the sandbox needs namespaces; deployed software needs devices, the network, JIT
    for forbidden in ("RestrictNamespaces", "PrivateDevices", "PrivateNetwork",
                      "MemoryDenyWriteExecute", "IPAddressDeny", "DynamicUser"):  # fmt: skip
        assert forbidden not in settings
    assert settings["ProtectSystem"] == ["full"]


def test_agent_env_holds_manager_anchor_and_tags_not_the_token() -> None:
    spec = agent_env(AgentConfig("http://m:8080", b"x", ("lab", "pi")))
    assert spec.mode == 0o600 and spec.secret
    text = spec.content.decode()
    assert "SWARMDEPLOY_AGENT_MANAGER=http://m:8080\n" in text
    assert "SWARMDEPLOY_AGENT_TRUST_ANCHOR=/etc/swarmdeploy/ca.pem\n" in text
    assert "SWARMDEPLOY_AGENT_TAGS=lab,pi\n" in text and "TOKEN" not in text


def test_token_env_holds_token_and_id() -> None:
    spec = token_env("0123-4567-89ab", "dev-1")
    assert spec.mode == 0o600
    assert spec.content.decode().splitlines()[1:] == [
        "SWARMDEPLOY_AGENT_TOKEN=0123-4567-89ab",
        "SWARMDEPLOY_AGENT_ID=dev-1",
    ]


@pytest.mark.parametrize("value", ["a b", "x\nSWARMDEPLOY_AGENT_TOKEN=y", "$(id)", "'q'", '"'])
def test_env_line_refuses_values_that_need_quoting(value: str) -> None:
    with pytest.raises(LayoutError, match="SWARMDEPLOY_AGENT_X"):
        env_line("SWARMDEPLOY_AGENT_X", value)


@pytest.mark.parametrize("command", ["swarmdeploy", "", "/bin/x; rm", "/opt/x %h", "/a b'c"])
def test_check_exec_refuses_relative_or_unsafe_commands(command: str) -> None:
    with pytest.raises(LayoutError, match="--exec"):
        check_exec(command)


def test_check_exec_accepts_interpreter_and_module() -> None:
    assert check_exec("/usr/bin/python3  -m swarmdeploy") == "/usr/bin/python3 -m swarmdeploy"
