"""Table helpers of the CLI (cli/render.py)."""

from __future__ import annotations

import pytest

from swarmdeploy.cli.render import trust_label
from swarmdeploy.cli.target_view import app_rows


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


def test_target_apps_rows_show_desired_running_and_why_only_when_behind() -> None:
    items = [
        {"app": "detector", "desired": {"taskId": "t2", "version": "2.0"},
         "running": {"taskId": "t1", "version": None}, "behind": True,
         "state": "install_failed", "reason": "exit 3"},
        {"app": "uploader", "desired": {"taskId": "t3", "version": None},
         "running": {"taskId": "t3", "version": None}, "behind": False,
         "state": "running", "reason": ""},
        {"app": "probe", "desired": None, "running": None, "behind": False, "state": None,
         "reason": ""},
    ]  # fmt: skip
    doc = app_rows(items)
    assert doc["total"] == 3
    assert [(r["desired"], r["running"], r["behind"], r["why"]) for r in doc["items"]] == [
        ("t2 (2.0)", "t1", "yes", "install_failed: exit 3"),
        ("t3", "t3", "", ""),
        ("-", "-", "", ""),
    ]
