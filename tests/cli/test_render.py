"""Table helpers of the CLI (cli/render.py)."""

from __future__ import annotations

import pytest

from swarmdeploy.cli.render import trust_label


@pytest.mark.parametrize(
    ("security", "label"),
    [
        (None, "-"),
        ({"mode": "unknown", "trustsThisManager": None}, "-"),
        ({"mode": "verified", "trustsThisManager": True}, "verified"),
        ({"mode": "verified", "trustsThisManager": None}, "verified"),
        ({"mode": "verified", "trustsThisManager": False}, "FOREIGN CA"),
        ({"mode": "insecure_lab", "trustsThisManager": None}, "INSECURE LAB"),
        ({"mode": "no_anchor", "trustsThisManager": None}, "NO ANCHOR"),
    ],
)
def test_trust_label_names_what_the_agent_trusts(
    security: dict[str, object] | None, label: str
) -> None:
    assert trust_label({"id": "t", "security": security}) == label
