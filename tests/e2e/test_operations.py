"""Operator actions against real agents: terminal, live events, revocation, crashes mid-install."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from websockets.sync.client import connect

from swarmdeploy.client import ApiError
from swarmdeploy.localfleet import LocalFleet, processes_below, running_below, wait_for

pytestmark = pytest.mark.e2e


def _agent(fleet: LocalFleet, agent_id: str, tags: list[str] | None = None) -> None:
    token = fleet.tokens(f"set-{agent_id}", 1)[0]
    fleet.start_agent(agent_id, token=token, tags=tags or ["swarm"])
    fleet.wait_online([agent_id])


def _collect(ws: Any, until: str, timeout_s: float) -> list[dict[str, Any]]:
    """Receive log events until one has ``until`` as its output."""
    deadline = time.monotonic() + timeout_s
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        event = json.loads(frame)
        if event.get("topic") != "logs":
            continue
        lines.extend(event["payload"])
        if any(x["output"] == until for x in event["payload"]):
            return lines
    raise AssertionError(f"no log event {until!r}; got {[x['output'] for x in lines]}")


def test_terminal_output_streams_on_events_and_stop_kills_it(fleet: LocalFleet) -> None:
    _agent(fleet, "t1")
    ws_url = f"ws://127.0.0.1:{fleet.http_port}/events?topics=logs&target=t1"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {fleet.admin_key}"}) as ws:
        fleet.api.request("PUT", "/targets/t1/command", json={"command": "echo term-$((6*7))"})
        lines = _collect(ws, "term-42", timeout_s=20)
        assert all(x["target"] == "t1" for x in lines)
        fleet.api.request(
            "PUT", "/targets/t1/command", json={"command": "echo started; exec sleep 300"}
        )
        _collect(ws, "started", timeout_s=20)
        terminal_dir = fleet.agent_dir("t1") / "terminal"
        assert processes_below(terminal_dir)
        fleet.api.request("DELETE", "/targets/t1/command")
        wait_for(
            lambda: not processes_below(terminal_dir),
            timeout_s=15,
            what="the terminal command to be killed",
        )
    pointers = fleet.logs(target="t1", command="$manager")
    assert any("terminal command by" in x["output"] for x in pointers)
    audit = fleet.api.request("GET", "/audit")["items"]
    assert any(e["details"].get("command") == "echo term-$((6*7))" for e in audit)


def test_deleted_target_is_cut_off_and_cannot_reconnect(fleet: LocalFleet) -> None:
    _agent(fleet, "r1")
    _agent(fleet, "r2")
    fleet.api.request("DELETE", "/targets/r1")
    with pytest.raises(ApiError) as info:
        fleet.target("r1")
    assert info.value.status == 404
    refused = "the manager refused our key"
    wait_for(
        lambda: refused in fleet.agent_log("r1"),
        timeout_s=20,
        what="the revoked agent to report that its key is refused",
    )
    # The other agent keeps working after the revocation.
    task = fleet.api.request(
        "POST",
        "/tasks",
        json={"deploy": {"run": {"commands": ["true"]}, "target": {"ids": ["r2"]}}},
    )
    fleet.wait_states(task["id"], {"r2": "exited"})
    fleet.stop_agent("r1")
    before = fleet.agent_log("r1").count(refused)
    fleet.start_agent("r1")
    wait_for(
        lambda: fleet.agent_log("r1").count(refused) > before,
        timeout_s=20,
        what="the restarted revoked agent to be refused again",
    )
    with pytest.raises(ApiError):
        fleet.target("r1")


def test_agent_killed_mid_install_ends_in_a_final_state_old_keeps_running(
    fleet: LocalFleet,
) -> None:
    _agent(fleet, "k1")
    old = fleet.api.request(
        "POST",
        "/tasks",
        json={"deploy": {"run": {"commands": ["exec sleep 301"]}, "target": {"ids": ["k1"]}}},
    )
    fleet.wait_states(old["id"], {"k1": "running"})
    new = fleet.api.request(
        "POST",
        "/tasks",
        json={
            "deploy": {
                "install": {"commands": ["echo installing; sleep 30"]},
                "run": {"commands": ["exec sleep 302"]},
                "target": {"ids": ["k1"]},
            }
        },
    )
    fleet.wait_states(new["id"], {"k1": "installing"})
    fleet.stop_agent("k1", signal.SIGKILL)
    fleet.start_agent("k1")
    fleet.wait_states(new["id"], {"k1": {"install_failed", "running"}}, timeout_s=60)
    states = fleet.states(new["id"])

    def one_sleeper() -> list[str] | None:
        sleepers = list(running_below(fleet.agent_dir("k1"), "sleep 30").values())
        return sleepers if len(sleepers) == 1 else None

    sleepers = wait_for(one_sleeper, timeout_s=20, what="exactly one deployment running")
    if states["k1"] == "install_failed":
        assert "sleep 301" in sleepers[0]
        assert fleet.states(old["id"]) == {"k1": "running"}
    else:
        assert "sleep 302" in sleepers[0]
