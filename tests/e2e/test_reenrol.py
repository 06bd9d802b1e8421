"""A deleted (revoked) device enrols again as a new identity with a new token (issue 13),
with real manager and agent processes on loopback."""

from __future__ import annotations

import pytest

from swarmdeploy.agent.reenrol import REVOKED_MESSAGE
from swarmdeploy.client.rest import ApiError
from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e

REVOKED = REVOKED_MESSAGE.split("%s")[1].strip()  # "was deleted (revoked); start the agent..."


def test_deleted_agent_says_so_and_enrols_again_with_a_new_token(fleet: LocalFleet) -> None:
    fleet.start_agent("e1", token=fleet.tokens("first", 1)[0])
    fleet.wait_online(["e1"])
    old_keys = (fleet.agent_dir("e1") / "curve.key").read_text()
    fleet.api.request("DELETE", "/targets/e1")
    wait_for(lambda: REVOKED in fleet.agent_log("e1"), timeout_s=30, what="the revoked line")

    # Without a new token: it says again at start that it was revoked and needs one.
    fleet.stop_agent("e1")
    fleet.start_agent("e1")
    wait_for(
        lambda: fleet.agent_log("e1").count(REVOKED) >= 2, timeout_s=30, what="the line at start"
    )
    fleet.stop_agent("e1")
    assert fleet.agent_log("e1").count(REVOKED) <= 3  # said once per start, not per attempt

    # With a new token: a new identity (new id, new keys) comes online; the old id is gone.
    fleet.start_agent("e1", token=fleet.tokens("second", 1)[0], extra_args=["--id", "e1-new"])
    fleet.wait_online(["e1-new"])
    assert "enrolling again as a new identity (e1-new)" in fleet.agent_log("e1")
    assert (fleet.agent_dir("e1") / "curve.key").read_text() != old_keys
    with pytest.raises(ApiError) as gone:
        fleet.target("e1")
    assert gone.value.status == 404
    task = fleet.api.request(
        "POST",
        "/tasks",
        json={"deploy": {"run": {"commands": ["echo again"]}, "target": {"ids": ["e1-new"]}}},
    )
    fleet.wait_states(str(task["id"]), {"e1-new": "exited"})


def test_running_agent_with_a_token_stops_to_enrol_again_when_deleted(fleet: LocalFleet) -> None:
    token = fleet.tokens("first", 1)[0]
    fleet.start_agent("e2", token=token)
    fleet.wait_online(["e2"])
    fleet.stop_agent("e2")
    proc = fleet.start_agent("e2", token=token)  # spent: not used, but kept in its settings
    fleet.wait_online(["e2"])
    fleet.api.request("DELETE", "/targets/e2")
    wait_for(lambda: proc.poll() is not None, timeout_s=30, what="the agent to stop")
    assert proc.returncode == 3
    assert "the next start enrols a new identity with the given token" in fleet.agent_log("e2")
