"""``make demo``: the real thing on the embedded default, on this machine.

A manager on SQLite and three agents (separate processes and data dirs) register with
one-time tokens; the original tool's ``zip-deploy-python.yml`` example is deployed to them by
tag (one agent gets the tag through the API, as an operator would assign it); progress and
output are printed; a long-running service is deployed and then stopped, and the demo checks
that no deployed process survives. ``--keep`` leaves everything running.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Any

import yaml

from swarmdeploy.client import ApiError
from swarmdeploy.localfleet import SYSTEM_PATH, LocalFleet, processes_below, wait_for

AGENTS = {"rover-1": ["swarm"], "rover-2": ["swarm"], "drone-1": ["lab"]}
#: Agents that poll over HTTP (docs/protocol.md §10) instead of CurveZMQ.
HTTP_AGENTS = {"drone-1"}
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples/original/zip-deploy-python.yml"
SERVICE = {
    "description": "a small service that runs until stopped",
    "debug": True,
    "deploy": {
        "run": {"commands": ["while true; do echo tick; sleep 1; done"], "autoRestart": True},
        "target": {"tags": ["swarm"]},
    },
}


def _say(step: str, detail: str = "") -> None:
    print(f"\n== {step}" + (f"\n   {detail}" if detail else ""), flush=True)


def _example_descriptor() -> dict[str, Any]:
    """The original example; its script starts with ``#!/usr/bin/env python``, so on a machine
    without a system-wide ``python`` command its run command is given to ``python3``."""
    if not EXAMPLE.is_file():
        raise SystemExit(f"the example descriptor is missing: {EXAMPLE}")
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(doc, dict)
    if shutil.which("python", path=SYSTEM_PATH) is None:
        print(
            "   note: no `python` command on this machine (Debian: apt install python-is-python3);"
        )
        print("         running the example's script with python3 instead")
        run = doc["deploy"]["run"]
        run["commands"] = [f"python3 {cmd}" for cmd in run["commands"]]
    return doc


def _follow(
    fleet: LocalFleet,
    task_id: str,
    final: set[str],
    timeout_s: float,
    seen: dict[str, str] | None = None,
) -> dict[str, str]:
    """Print every per-target state change until all targets are in one of ``final``."""
    seen = dict(seen or {})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = fleet.states(task_id)
        for target, state in sorted(states.items()):
            if seen.get(target) != state:
                print(f"   {target:<8} {seen.get(target, '-'):>12} -> {state}", flush=True)
        seen = states
        if states and all(s in final for s in states.values()):
            return states
        time.sleep(0.2)
    raise SystemExit(f"task {task_id} did not finish in {timeout_s:.0f} s: {seen}")


def _register(fleet: LocalFleet) -> None:
    _say("token set", "POST /token_sets?name=demo&total=3 — tokens are shown once")
    tokens = fleet.tokens("demo", len(AGENTS))
    print("   " + ", ".join(tokens))
    _say(
        "agents",
        "three `swarmdeploy agent` processes, provisioned with the manager's ca.pem as trust "
        "anchor, register and connect: two over CurveZMQ, drone-1 by HTTP polling "
        "(--transport http)",
    )
    for (agent_id, tags), token in zip(AGENTS.items(), tokens, strict=True):
        extra = ["--transport", "http"] if agent_id in HTTP_AGENTS else []
        fleet.start_agent(agent_id, token=token, tags=tags, extra_args=extra)
    fleet.wait_online(list(AGENTS), timeout_s=60)
    for agent_id in AGENTS:
        security = wait_for(
            functools.partial(_reported_security, fleet, agent_id),
            timeout_s=30,
            what=f"{agent_id}'s first health report",
        )
        trusts = "trusts this manager's CA" if security["trustsThisManager"] else "FOREIGN CA"
        target = fleet.target(agent_id)
        link = "HTTP" if agent_id in HTTP_AGENTS else "CurveZMQ"
        print(
            f"   {agent_id:<8} online ({link}), tags {target['tags']}, {security['mode']}, {trusts}"
        )
    _say("tag through the API", "PUT /targets/drone-1 {tags: [lab, swarm]}")
    fleet.api.request("PUT", "/targets/drone-1", json={"tags": ["lab", "swarm"]})


def _reported_security(fleet: LocalFleet, agent_id: str) -> dict[str, Any] | None:
    security = fleet.target(agent_id).get("security") or {}
    return security if security.get("mode", "unknown") != "unknown" else None


def _deploy_example(fleet: LocalFleet) -> str:
    _say("deploy", "the original's zip-deploy-python.yml, matching tag swarm")
    task = fleet.api.request("POST", "/tasks", json=_example_descriptor())
    print(f"   task {task['id']} matched {task['match']['total']} target(s)")
    signed = task.get("signedBy") or {}
    print(
        f"   signed with {signed.get('name')}'s operator key {signed.get('keyId')} "
        f"(sequence {task.get('sequence')}); each agent verifies it before installing"
    )
    _follow(fleet, task["id"], {"exited", "failed", "install_failed", "declined"}, 90)

    def outputs() -> list[dict[str, Any]] | None:
        lines = [x for x in fleet.logs(task=task["id"], stage="run") if "hello" in x["output"]]
        return lines if len(lines) == 3 * len(AGENTS) else None

    for line in wait_for(outputs, timeout_s=30, what="the output of every agent"):
        print(f"   {line['target']:<8} | {line['output']}")
    return str(task["id"])


def _deploy_and_stop_service(fleet: LocalFleet) -> str:
    _say("service", "a long-running command on every swarm device, then PUT /tasks/{id}/stop")
    task = fleet.api.request("POST", "/tasks", json=SERVICE)
    running = _follow(fleet, task["id"], {"running"}, 60)
    fleet.api.request("PUT", f"/tasks/{task['id']}/stop")
    _follow(fleet, task["id"], {"stopped"}, 60, seen=running)
    agents_root = fleet.root / "agents"
    wait_for(
        lambda: not any(processes_below(agents_root / a / "tasks") for a in AGENTS),
        timeout_s=20,
        what="every deployed process to be gone",
    )
    print("   no deployed process is left on any device")
    return str(task["id"])


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave manager and agents running")
    parser.add_argument("--data-dir", help="root directory (default: a temporary one)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        root = pathlib.Path(
            args.data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="sd-demo-"))
        )
        root.mkdir(parents=True, exist_ok=True)
        fleet = stack.enter_context(LocalFleet(root))
        _say("manager", f"swarmdeploy manager on {fleet.url} (SQLite in {fleet.manager_dir})")
        fleet.start_manager()
        try:
            _register(fleet)
            example = _deploy_example(fleet)
            service = _deploy_and_stop_service(fleet)
        except (ApiError, OSError) as exc:
            print(f"demo failed: {exc}; logs are in {root}", file=sys.stderr)
            return 1
        _say(
            "done",
            f"{len(AGENTS)} agents registered; task {example} ran to completion everywhere; "
            f"task {service} was stopped and left nothing behind.",
        )
        if args.keep:
            print(f"\nrunning: manager {fleet.url}, admin key {fleet.admin_key}; Ctrl+C stops all")
            with contextlib.suppress(KeyboardInterrupt):
                while fleet.manager is not None and fleet.manager.poll() is None:
                    time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
