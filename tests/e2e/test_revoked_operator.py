"""A revoked operator key, end to end with real processes (issue 5): the manager refuses to
sign for it, connected agents get the CA-signed revocation list at once, and an agent keeps
refusing tasks signed with that key even when the manager's database is changed to forget
the revocation (the agent, not the manager, is the last line of defence)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from swarmdeploy.client import ApiError
from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e


def _task(target: str, command: str) -> dict[str, Any]:
    return {"deploy": {"run": {"commands": [command]}, "target": {"ids": [target]}}}


def _revocation_number(fleet: LocalFleet, target_id: str) -> int:
    health = fleet.target(target_id).get("health") or {}
    security = (health.get("__extra__") or {}).get("security") or {}
    number = security.get("revocation_list", 0)
    return number if isinstance(number, int) else 0


def test_revoked_operator_key_is_refused_by_the_agent_even_if_the_manager_forgets(
    fleet: LocalFleet,
) -> None:
    token = fleet.tokens("set-r", 1)[0]
    fleet.start_agent("r1", token=token)
    fleet.wait_online(["r1"])
    first = fleet.api.request("POST", "/tasks", json=_task("r1", "echo signed-and-run"))
    fleet.wait_states(first["id"], {"r1": "exited"})
    key_id = first["signedBy"]["keyId"]

    fleet.api.request("DELETE", f"/operator_keys/{key_id}")
    wait_for(
        lambda: _revocation_number(fleet, "r1") >= 2,
        timeout_s=30,
        what="r1 accepted the revocation list",
    )
    with pytest.raises(ApiError) as refused:
        fleet.api.request("POST", "/tasks", json=_task("r1", "echo never"))
    assert refused.value.status == 403 and "revoked" in refused.value.message

    # An intruder with write access to the manager's database un-revokes the key.
    with sqlite3.connect(fleet.manager_dir / "swarmdeploy.db") as db:
        assert db.execute("UPDATE operator_keys SET revoked_at = NULL").rowcount >= 1
    second = fleet.api.request("POST", "/tasks", json=_task("r1", "echo must-not-run"))
    assert second["signedBy"]["keyId"] == key_id
    fleet.wait_states(second["id"], {"r1": {"install_failed", "declined"}})
    [row] = fleet.task(second["id"])["targets"]
    assert "revoked" in row["reason"] and "refused by the manager" not in row["reason"]
    leaked = fleet.logs(task=second["id"], output="must-not-run")
    assert not leaked, [(line["stage"], line["command"], line["output"]) for line in leaked]
