"""The target document shows the OS, architecture, agent version and transport that a real
agent reports (issue 13)."""

from __future__ import annotations

import pytest

from swarmdeploy import __version__
from swarmdeploy.agent.healthloop import device_facts
from swarmdeploy.cli.app import main as cli_main
from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e


def test_target_shows_os_arch_agent_version_and_transport(
    fleet: LocalFleet, transport: str
) -> None:
    fleet.start_agent("f1", token=fleet.tokens("facts", 1)[0])
    fleet.wait_online(["f1"])
    wait_for(lambda: fleet.target("f1")["os"] is not None, timeout_s=30, what="a health report")
    doc = fleet.target("f1")
    os_text, arch, _ = device_facts()
    assert (doc["os"], doc["arch"], doc["agentVersion"], doc["transport"]) == (
        os_text, arch, __version__, transport,
    )  # fmt: skip
    listed = fleet.api.request("GET", "/targets")["items"]
    assert [(t["id"], t["arch"]) for t in listed] == [("f1", arch)]
    fleet.stop_agent("f1")  # persisted: still shown while the agent is away
    fleet.stop_manager()
    fleet.start_manager()
    assert fleet.target("f1")["agentVersion"] == __version__


def test_targets_list_shows_the_transport_each_device_uses(
    fleet: LocalFleet,
    transport: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet.start_agent("t1", token=fleet.tokens("link", 1)[0])
    fleet.wait_online(["t1"])
    wait_for(lambda: fleet.target("t1")["transport"], timeout_s=30, what="a health report")
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    assert cli_main(["--url", fleet.url, f"--api-key={fleet.admin_key}", "targets", "list"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if " t1 " in f" {line} "]
    assert "transport" not in row and f" {transport} " in f" {row} ", row
