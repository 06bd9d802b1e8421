"""A real agent started with ``--insecure-lab`` (the harness's mode) is shown as such on its
target (issue 5): the field travels in the agent's ``health`` report through the manager."""

from __future__ import annotations

import pytest

from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e


def test_agent_in_insecure_lab_mode_is_shown_on_its_target(fleet: LocalFleet) -> None:
    token = fleet.tokens("set-lab", 1)[0]
    fleet.start_agent("lab-1", token=token, tags=["lab"])
    fleet.wait_online(["lab-1"])
    wait_for(
        lambda: fleet.target("lab-1")["insecureLab"] is True,
        timeout_s=30,
        what="lab-1 shown in insecure lab mode",
    )
