"""Smoke tests of ``python -m bench fleet`` (``bench/bench_fleet.py``): five simulated agents
against a real manager process, so that the benchmark cannot rot unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_fleet


def test_five_agents_every_agent_verifies_and_exits(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    argv = ["--agents", "5", "--payload-mb", "0.3", "--small-kib", "1"]
    argv += ["--timeout-s", "20", "--out", str(out)]

    assert bench_fleet.main(argv) == 0

    run = json.loads(out.read_text())["results"]["5"]
    for deploy in ("deploy_small", "deploy_large"):
        assert run[deploy]["exited"] == 5, run[deploy]
        assert run[deploy]["signatures_verified"] == 5, run[deploy]
    assert run["deploy_large"]["chunks"] == 5 * 2  # 0.3 MiB in chunks of 256 KiB
    assert run["agent_counters"]["digests_verified"] == 10
    assert run["connect"]["all_online_s"] > 0
    assert run["manager"]["peak_rss_mb"] > 0


def test_agents_in_two_worker_processes_every_agent_verifies_and_exits(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    argv = ["--agents", "20", "--agent-processes", "2", "--payload-mb", "0.3"]
    argv += ["--small-kib", "1", "--timeout-s", "30", "--out", str(out)]

    assert bench_fleet.main(argv) == 0

    run = json.loads(out.read_text())["results"]["20"]
    assert run["agent_processes"] == 2
    for deploy in ("deploy_small", "deploy_large"):
        assert run[deploy]["exited"] == 20, run[deploy]
        assert run[deploy]["signatures_verified"] == 20, run[deploy]
    assert run["deploy_large"]["chunks"] == 20 * 2  # counted in the workers, summed here
    assert run["agent_counters"]["digests_verified"] == 40
    assert run["connect"]["all_online_s"] > 0


def test_agent_processes_more_than_agents_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_fleet.main(["--agents", "3", "--agent-processes", "4"])

    assert "--agent-processes" in capsys.readouterr().err
