"""``make demo`` runs end to end with real processes and exits 0."""

from __future__ import annotations

import pytest

from swarmdeploy.demo import main

pytestmark = pytest.mark.e2e


def test_demo_deploys_example_stops_service_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "drone-1  | hello 3" in out  # reached through the tag assigned by the API
    assert out.count("| hello 3") == 3
    assert "no deployed process is left on any device" in out
    assert out.count("verified, trusts this manager's CA") == 3  # provisioned with ca.pem
    assert "each agent verifies it before installing" in out and "(sequence 1)" in out
