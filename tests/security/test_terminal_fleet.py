"""Issue 9 with real processes (a manager and agents on loopback, provisioned with the
manager's ``ca.pem``): the terminal is signed and sandboxed end to end, a row written into
the manager's ``requests`` table runs nothing on the device, and revoking an operator
revokes its signing keys -- it cannot issue itself a new one, and its running deployment is
marked on the target."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarmdeploy.client import ApiError, ManagerClient
from swarmdeploy.localfleet import LocalFleet, wait_for
from tests.e2e.conftest import FAST_AGENT, FAST_MANAGER

pytestmark = pytest.mark.e2e


@pytest.fixture
def fleet(tmp_path: pathlib.Path) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path, manager_args=FAST_MANAGER, agent_args=FAST_AGENT) as f:
        f.start_manager()
        yield f


def _agent(fleet: LocalFleet, agent_id: str, *extra: str) -> None:
    token = fleet.tokens(f"set-{agent_id}", 1)[0]
    fleet.start_agent(agent_id, token=token, extra_args=list(extra))
    fleet.wait_online([agent_id])


def _terminal(fleet: LocalFleet, until: str) -> list[str]:
    """Terminal output of t1 (as the admin sees it) once a line contains ``until``."""

    def lines() -> list[str] | None:
        found = [str(x["output"]) for x in fleet.logs(target="t1", task="terminal")]
        return found if any(until in line for line in found) else None

    wait_for(lambda: lines() is not None, timeout_s=20, what=f"terminal output {until!r}")
    return lines() or []


def _request_row(fleet: LocalFleet, request_id: str) -> tuple[str, str]:
    with sqlite3.connect(fleet.manager_dir / "swarmdeploy.db") as db:
        row = db.execute("SELECT state, message FROM requests WHERE id = ?", (request_id,))
        found = row.fetchone()
    return (str(found[0]), str(found[1])) if found else ("", "")


def test_terminal_command_is_signed_and_runs_as_the_sandbox_user(fleet: LocalFleet) -> None:
    _agent(fleet, "t1")
    fleet.api.request(
        "PUT", "/targets/t1/command", json={"command": "id -u; head -1 /etc/shadow || echo no"}
    )
    out = _terminal(fleet, "exit status")
    assert "65534" in out and "no" in out and "0" not in out
    with sqlite3.connect(fleet.manager_dir / "swarmdeploy.db") as db:
        [(payload,)] = db.execute("SELECT payload FROM requests WHERE kind = 'terminal'")
    assert json.loads(payload)["signature"]  # stored signed, in the existing payload column
    security = fleet.target("t1")["security"]
    assert security["terminal"] == "sandboxed" and security["onRevoked"] == "keep"


def test_request_row_written_into_the_database_runs_nothing(fleet: LocalFleet) -> None:
    _agent(fleet, "t1")
    now = int(time.time() * 1000)
    payload = json.dumps({"command": "echo pwned-by-the-database"})
    with sqlite3.connect(fleet.manager_dir / "swarmdeploy.db") as db:
        db.execute(
            "INSERT INTO requests (id, target_id, kind, payload, created_at, expires_at, state,"
            " message) VALUES ('evil1', 't1', 'terminal', ?, ?, ?, 'pending', '')",
            (payload, now, now + 600_000),
        )
    fleet.stop_agent("t1")  # the row is sent at the agent's next hello
    fleet.start_agent("t1")
    wait_for(
        lambda: _request_row(fleet, "evil1")[0] == "refused",
        timeout_s=30,
        what="the agent to refuse the unsigned request",
    )
    assert "unsigned" in _request_row(fleet, "evil1")[1]
    audit = fleet.logs(target="t1", command="$manager")  # the refusal leaves a trail
    assert any("refused by the agent: refused: unsigned" in x["output"] for x in audit)
    assert not any("pwned" in x["output"] and x["command"] != "$manager"
                   for x in fleet.logs(target="t1"))  # fmt: skip


def _api_key_id(fleet: LocalFleet, name: str) -> str:
    keys = fleet.api.request("GET", "/api_keys")["items"]
    return str(next(k["id"] for k in keys if k["name"] == name))


def test_revoked_operator_cannot_issue_itself_a_key_and_its_deployment_is_marked(
    fleet: LocalFleet,
) -> None:
    _agent(fleet, "t1")
    created = fleet.api.request("POST", "/api_keys", json={"name": "mallory", "role": "operator"})
    with ManagerClient(fleet.url, str(created["key"])) as mallory:
        _revoked_operator(fleet, mallory)


def _revoked_operator(fleet: LocalFleet, mallory: ManagerClient) -> None:
    task: dict[str, Any] = mallory.request("POST", "/tasks", json={
        "deploy": {"run": {"commands": ["exec sleep 300"]}, "target": {"ids": ["t1"]}}
    })  # fmt: skip
    fleet.wait_states(task["id"], {"t1": "running"})
    key_id = task["signedBy"]["keyId"]
    fleet.api.request("DELETE", f"/operator_keys/{key_id}")
    with pytest.raises(ApiError) as issued:  # a fresh key for itself: an admin act
        mallory.request("POST", "/operator_keys", json={"name": "again"})
    assert issued.value.status == 403
    with pytest.raises(ApiError) as signed:
        mallory.request("PUT", "/targets/t1/command", json={"command": "id"})
    assert signed.value.status == 403 and "revoked" in signed.value.message
    wait_for(
        lambda: fleet.target("t1")["signerRevoked"] == [task["id"]],
        timeout_s=30,
        what="the target to show its deployment's signer as revoked",
    )
    assert fleet.states(task["id"]) == {"t1": "running"}  # --on-revoked keep (default)


def test_deleting_an_api_key_revokes_its_signing_keys(fleet: LocalFleet) -> None:
    created = fleet.api.request("POST", "/api_keys", json={"name": "eve", "role": "operator"})
    eve_id = _api_key_id(fleet, "eve")
    fleet.api.request("POST", "/operator_keys", json={"owner": eve_id})
    fleet.api.request("DELETE", f"/api_keys/{eve_id}")
    keys = fleet.api.request("GET", "/operator_keys")["items"]
    assert [k["revokedAt"] is not None for k in keys if k["owner"] == eve_id] == [True]
    with ManagerClient(fleet.url, str(created["key"])) as eve, pytest.raises(ApiError) as gone:
        eve.request("GET", "/targets")
    assert gone.value.status == 401
