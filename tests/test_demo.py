"""``make demo`` runs end to end against a real manager process and exits 0."""

from __future__ import annotations

import pytest

from swarmdeploy.demo import main


def test_demo_walk_through_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "refused as expected — a spent token" in out
    assert "device-2" in out and "pending" in out
    assert "2 target(s) left after one revocation" in out
