"""Staged rollouts of 200 simulated agents (``bench/bench_rollout.py``'s run: a real manager
process, the agents in this process over CurveZMQ), groups 1 % / 10 % / rest with an error
threshold of 5 %: with a failure rate of 0.2 the rollout halts in the first group and no agent
of a later group is announced the task (counted at the agents); with 0.0 it completes, group
after group. The 1,000-agent run is ``python -m bench rollout`` (bench/results/rollout.json)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bench.bench_rollout import Options, run_rollout

pytestmark = pytest.mark.e2e

AGENTS = 200
#: Seed 1 makes 1 of the 2 first-group agents fail their install at a failure rate of 0.2.
SEED = 1


def test_failure_rate_0_2_halts_in_the_first_group_and_announces_nothing_later(
    tmp_path: Path,
) -> None:
    run = asyncio.run(run_rollout(tmp_path, Options(AGENTS, 0.2, SEED, timeout_s=240)))
    assert run["expected_first_group_failures"] >= 1  # the seed's precondition
    assert run["group_sizes"] == [2, 20, 178]
    assert (run["state"], run["current_group"]) == ("halted", 0), run
    assert "group canary" in run["reason"] and "error threshold of 5 %" in run["reason"]
    assert run["announced_per_group"] == [2, 0, 0]
    failed = run["failures_seen"]["first_group_failed"]
    assert failed == run["expected_first_group_failures"]
    assert failed == run["failures_seen"]["simulated_install_failures"]
    assert run["state_counts"]["pending"] == 198


def test_failure_rate_0_completes_group_by_group(tmp_path: Path) -> None:
    run = asyncio.run(run_rollout(tmp_path, Options(AGENTS, 0.0, SEED, timeout_s=240)))
    assert (run["state"], run["current_group"]) == ("completed", 2), run
    assert run["announced_per_group"] == [2, 20, 178]
    assert run["in_order"]
    assert run["state_counts"] == {"exited": AGENTS}
    assert run["failures_seen"] == {"first_group_failed": 0, "simulated_install_failures": 0}
