"""A manager killed (SIGKILL) while its agents' state reports and log batches are being
group-committed (docs/adr/0011-live-deployments-and-group-commit.md): after the restart
nothing an agent had acknowledged is missing and nothing is stored twice -- every output
line of every agent is stored exactly once and every target reaches ``exited``."""

from __future__ import annotations

import collections
import signal

import pytest

from swarmdeploy.localfleet import LocalFleet, wait_for
from tests.e2e.conftest import zip_b64

pytestmark = pytest.mark.e2e

AGENTS = ["g1", "g2", "g3", "g4"]
LINES = 60
#: Prints LINES numbered lines over about three seconds: log batches keep flowing.
CHATTY = f"for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.05; done"


def _lines(fleet: LocalFleet, task: str, target: str) -> list[str]:
    return [
        x["output"]
        for x in fleet.logs(task=task, target=target)
        if str(x["output"]).startswith("line-")
    ]


def test_killed_in_the_middle_of_batches_loses_nothing_and_stores_nothing_twice(
    fleet: LocalFleet,
) -> None:
    tokens = fleet.tokens("crash", len(AGENTS))
    for agent_id, token in zip(AGENTS, tokens, strict=True):
        fleet.start_agent(agent_id, token=token, tags=["crash"])
    fleet.wait_online(AGENTS)
    doc = fleet.api.request(
        "POST",
        "/tasks",
        json={
            "debug": True,  # stream every output line
            "source": {"zip": zip_b64({"a.txt": "a"})},
            "deploy": {"run": {"commands": [CHATTY]}, "target": {"tags": ["crash"]}},
        },
    )
    task = str(doc["id"])

    def some_lines_stored() -> bool:
        return any(_lines(fleet, task, a) for a in AGENTS)

    wait_for(some_lines_stored, timeout_s=60, what="the first output lines to be stored")
    stored_before = {a: len(_lines(fleet, task, a)) for a in AGENTS}
    assert min(stored_before.values()) < LINES  # the kill lands while batches are flowing
    fleet.stop_manager(signal.SIGKILL)
    fleet.start_manager()

    fleet.wait_states(task, dict.fromkeys(AGENTS, "exited"), timeout_s=90)
    for agent_id in AGENTS:
        expected = [f"line-{i}" for i in range(1, LINES + 1)]

        def complete(agent: str = agent_id, want: int = len(expected)) -> bool:
            return len(_lines(fleet, task, agent)) >= want

        wait_for(complete, timeout_s=30, what=f"every line of {agent_id}")
        lines = _lines(fleet, task, agent_id)
        twice = [line for line, n in collections.Counter(lines).items() if n > 1]
        assert twice == [], f"{agent_id} has lines stored twice: {twice}"
        assert sorted(lines) == sorted(expected), f"{agent_id} lost lines"
        assert len(lines) >= stored_before[agent_id]
