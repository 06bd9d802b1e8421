"""Health-gated installs with automatic local rollback (issue 15) through real processes:
manager, agent, CurveZMQ, and a run command that serves its own health URL on loopback."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from swarmdeploy.localfleet import LocalFleet, free_port, running_below, wait_for

pytestmark = pytest.mark.e2e

#: A run command's HTTP service: answers every GET with the status given on its command line.
SERVE = """import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(sys.argv[2])); self.end_headers()
        self.wfile.write(sys.argv[3].encode())
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _release(version: str, port: int, status: int, **health: Any) -> dict[str, object]:
    """A release of app ``web`` whose run command serves ``status`` on ``port``."""
    return {
        "app": "web",
        "version": version,
        "sandbox": {"network": True},
        "deploy": {
            "run": {"commands": [f"exec python3 -c '{SERVE}' {port} {status} web-{version}"]},
            "target": {"ids": ["h1"]},
            "health": {
                "http": f"http://127.0.0.1:{port}/health",
                "initialDelay": 0.5,
                "interval": 0.5,
                "attempts": 4,
                **health,
            },
        },
    }


def _post(fleet: LocalFleet, descriptor: dict[str, object]) -> str:
    return str(fleet.api.request("POST", "/tasks", json=descriptor)["id"])


def _servers(fleet: LocalFleet, version: str) -> list[int]:
    return sorted(running_below(fleet.agent_dir("h1"), f"web-{version}"))


def _reason(fleet: LocalFleet, task_id: str) -> str:
    (target,) = [t for t in fleet.task(task_id)["targets"] if t["id"] == "h1"]
    return str(target.get("reason") or "")


def _folders(fleet: LocalFleet) -> set[str]:
    return {p.name for p in (fleet.agent_dir("h1") / "tasks").iterdir()}


def _start(fleet: LocalFleet) -> None:
    fleet.start_agent("h1", token=fleet.tokens("health", 1)[0])
    fleet.wait_online(["h1"])


def test_failing_release_rolls_back_and_a_healthy_one_cleans_up(fleet: LocalFleet) -> None:
    _start(fleet)
    v1 = _post(fleet, _release("1", free_port(), 200))
    fleet.wait_states(v1, {"h1": "healthy"})
    v1_pid = wait_for(lambda: _servers(fleet, "1"), timeout_s=10, what="v1 serving")[0]

    # v2 answers 500: after its attempts the agent stops it and restarts v1 (verified)
    v2 = _post(fleet, _release("2", free_port(), 500))
    fleet.wait_states(v2, {"h1": "rolled_back"})
    reason = _reason(fleet, v2)
    assert "health check failed 4 time(s)" in reason
    assert "HTTP 500" in reason and "web-2" in reason  # the failing check's output
    assert f"rolled back to task {v1}" in reason
    restored = wait_for(lambda: _servers(fleet, "1"), timeout_s=10, what="v1 serving again")
    assert restored != [v1_pid]  # started again, not left running
    assert not _servers(fleet, "2")
    assert fleet.states(v1) == {"h1": "healthy"}  # the manager never saw v1 stop
    assert {v1, v2} <= _folders(fleet)
    groups = fleet.api.request("GET", f"/tasks/{v2}")["failures"]
    assert [(g["state"], g["count"]) for g in groups] == [("rolled_back", 1)]

    # v3 passes: healthy, v1 reported replaced, v1's and v2's folders gone
    v3 = _post(fleet, _release("3", free_port(), 200, upFor=1))
    fleet.wait_states(v3, {"h1": "healthy"})
    fleet.wait_states(v1, {"h1": "stopped"})
    wait_for(lambda: _folders(fleet) == {v3}, timeout_s=10, what="only v3's folder left")
    wait_for(lambda: not _servers(fleet, "1"), timeout_s=10, what="v1 stopped")
    assert len(_servers(fleet, "3")) == 1


def test_agent_killed_during_the_checks_resumes_them(fleet: LocalFleet) -> None:
    _start(fleet)
    v1 = _post(fleet, _release("1", free_port(), 200))
    fleet.wait_states(v1, {"h1": "healthy"})

    # a long initial delay keeps v2 in its health window while the agent is killed
    v2 = _post(fleet, _release("2", free_port(), 500, initialDelay=4, deadline=60))
    fleet.wait_states(v2, {"h1": "running"})
    wait_for(lambda: _servers(fleet, "2"), timeout_s=10, what="v2 serving")
    assert fleet.stop_agent("h1", signal.SIGKILL) == -signal.SIGKILL
    fleet.start_agent("h1")
    fleet.wait_online(["h1"])

    fleet.wait_states(v2, {"h1": "rolled_back"})
    assert "HTTP 500" in _reason(fleet, v2)
    wait_for(lambda: _servers(fleet, "1"), timeout_s=10, what="v1 serving again")
    wait_for(lambda: not _servers(fleet, "2"), timeout_s=10, what="v2 gone")
    assert fleet.states(v1) == {"h1": "healthy"}
    assert "resuming the health checks" in str(fleet.logs(task=v2))


def test_failing_first_release_without_a_previous_one_fails(fleet: LocalFleet) -> None:
    _start(fleet)
    task = _post(fleet, _release("1", free_port(), 503, attempts=2))
    fleet.wait_states(task, {"h1": "failed"})
    reason = _reason(fleet, task)
    assert "HTTP 503" in reason and "no previous release to roll back to" in reason
    wait_for(lambda: not _servers(fleet, "1"), timeout_s=10, what="the failed release stopped")
