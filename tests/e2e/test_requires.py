"""``deploy.requires`` end to end: validated by the manager, signed in the manifest, checked
by a real agent at assessment (declined naming the requirement) -- issue 13."""

from __future__ import annotations

from typing import Any

import pytest

from swarmdeploy.agent.resources import machine_arch
from swarmdeploy.client.rest import ApiError
from swarmdeploy.localfleet import LocalFleet

pytestmark = pytest.mark.e2e


def _task(fleet: LocalFleet, requires: dict[str, Any]) -> str:
    doc = fleet.api.request(
        "POST",
        "/tasks",
        json={
            "deploy": {
                "run": {"commands": ["echo fits"]},
                "target": {"ids": ["q1"]},
                "requires": requires,
            }
        },
    )
    return str(doc["id"])


def test_requires_declines_devices_that_do_not_fit_and_runs_on_those_that_do(
    fleet: LocalFleet,
) -> None:
    fleet.start_agent("q1", token=fleet.tokens("req", 1)[0])
    fleet.wait_online(["q1"])
    huge = 10**12  # MB: one exabyte
    cases = {
        _task(fleet, {"arch": ["riscv64"]}): "deploy.requires.arch",
        _task(fleet, {"minFreeDiskMB": huge}): "deploy.requires.minFreeDiskMB",
        _task(fleet, {"minFreeMemoryMB": huge}): "deploy.requires.minFreeMemoryMB",
    }
    for task, field in cases.items():
        fleet.wait_states(task, {"q1": "declined"})
        assert field in fleet.task(task)["targets"][0]["reason"]
    here = machine_arch()
    fits = _task(fleet, {"arch": [here, "riscv64"], "minFreeDiskMB": 1, "minFreeMemoryMB": 1})
    fleet.wait_states(fits, {"q1": "exited"})
    assert fleet.task(fits)["deploy"]["requires"]["minFreeDiskMB"] == 1


def test_requires_with_an_unknown_field_is_refused_naming_it(fleet: LocalFleet) -> None:
    fleet.start_agent("q1", token=fleet.tokens("req", 1)[0])
    fleet.wait_online(["q1"])
    with pytest.raises(ApiError) as refused:
        _task(fleet, {"minFreeDiskMb": 5})
    assert refused.value.status == 422 and "minFreeDiskMb" in refused.value.message
    assert refused.value.path == "$.deploy.requires.minFreeDiskMb"
