"""A restarted manager does not call targets online on old evidence (issue #10 item 9,
docs/reliability.md): online starts from offline until a message arrives."""

from __future__ import annotations

import signal

import pytest

from swarmdeploy.localfleet import FleetError, LocalFleet, wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_restarted_manager_shows_an_agent_that_left_offline(
    fleet: LocalFleet, sig: signal.Signals
) -> None:
    tokens = fleet.tokens("set", 2)
    fleet.start_agent("gone", token=tokens[0])
    fleet.start_agent("stays", token=tokens[1])
    fleet.wait_online(["gone", "stays"])
    fleet.stop_agent("gone")  # a clean bye: offline as soon as the manager handled it
    try:
        wait_for(lambda: not fleet.target("gone")["online"], timeout_s=10, what="'gone' offline")
    except FleetError:
        manager = [line for line in fleet.manager_log().splitlines() if "gone" in line]
        pytest.fail(f"agent log:\n{fleet.agent_log('gone')}\nmanager:\n" + "\n".join(manager))
    fleet.stop_manager(sig)
    fleet.start_manager()
    assert not fleet.target("gone")["online"]  # not "online" for another 45 s
    fleet.wait_online(["stays"])  # the agent still running is online again once it speaks
