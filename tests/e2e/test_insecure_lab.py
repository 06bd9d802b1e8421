"""A real agent started with ``--insecure-lab`` is shown as such on its target, one with the
manager's ``ca.pem`` as trust anchor (the harness's default) is not (issue 5): the field
travels in the agent's ``health`` report through the manager."""

from __future__ import annotations

import pytest

from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e


def field_mode(fleet: LocalFleet) -> object:
    health = fleet.target("field-1").get("health") or {}
    security = (health.get("__extra__") or {}).get("security") or {}
    return security.get("mode")


def test_only_the_agent_in_insecure_lab_mode_is_shown_so(fleet: LocalFleet) -> None:
    tokens = fleet.tokens("set-lab", 2)
    fleet.start_agent("lab-1", token=tokens[0], tags=["lab"], insecure_lab=True)
    fleet.start_agent("field-1", token=tokens[1], tags=["lab"])
    fleet.wait_online(["lab-1", "field-1"])
    wait_for(
        lambda: fleet.target("lab-1")["insecureLab"] is True,
        timeout_s=30,
        what="lab-1 shown in insecure lab mode",
    )
    wait_for(
        lambda: field_mode(fleet) is not None,
        timeout_s=30,
        what="field-1 reported its security mode",
    )
    assert field_mode(fleet) == "verified"
    field = fleet.target("field-1")
    assert field["insecureLab"] is False
    assert field["security"]["mode"] == "verified" and field["security"]["trustsThisManager"]
    assert fleet.target("lab-1")["security"]["mode"] == "insecure_lab"
