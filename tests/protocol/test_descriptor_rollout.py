"""The ``rollout`` section of a task descriptor: groups, thresholds, soak, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from swarmdeploy.protocol.descriptor import parse_descriptor
from swarmdeploy.protocol.errors import DescriptorError


def _doc(rollout: Any, **target: Any) -> dict[str, Any]:
    return {
        "deploy": {"run": {"commands": ["./app"]}, "target": target or {"tags": ["cam"]}},
        "rollout": rollout,
    }


def _error(doc: dict[str, Any]) -> DescriptorError:
    with pytest.raises(DescriptorError) as exc:
        parse_descriptor(doc)
    return exc.value


def test_groups_parse_with_defaults_and_camel_case_thresholds() -> None:
    desc = parse_descriptor(
        _doc(
            {
                "groups": [
                    {"name": "canary", "count": 1, "soak": 30},
                    {"percent": 10, "successThreshold": 95, "errorThreshold": 5},
                    {"tags": ["lab"]},
                    {"ids": ["cam-1"]},
                    {},
                ]
            }
        )
    )
    assert desc.rollout is not None
    groups = desc.rollout.groups
    assert [g.choosers for g in groups] == [["count"], ["percent"], ["tags"], ["ids"], []]
    assert (groups[0].success_threshold, groups[0].error_threshold, groups[0].soak) == (
        100.0,
        0.0,
        30,
    )
    assert (groups[1].success_threshold, groups[1].error_threshold) == (95.0, 5.0)
    assert desc.to_builtins()["rollout"]["groups"][1] == {
        "percent": 10,
        "successThreshold": 95,
        "errorThreshold": 5,
    }


def test_no_rollout_section_is_none() -> None:
    doc = _doc(None)
    del doc["rollout"]
    assert parse_descriptor(doc).rollout is None


@pytest.mark.parametrize(
    ("rollout", "path", "words"),
    [
        ({"groups": [{"count": 1, "sise": 2}]}, "$.rollout.groups[0]", "sise"),
        ({"groups": []}, "$.rollout.groups", "1 to 100 groups"),
        ({"groups": [{"count": 1, "percent": 5}]}, "$.rollout.groups[0]", "count and percent"),
        ({"groups": [{}, {"count": 1}]}, "$.rollout.groups[0]", "only the last group"),
        ({"groups": [{"percent": 0}]}, "$.rollout.groups[0].percent", ">"),
        ({"groups": [{"percent": 101}]}, "$.rollout.groups[0].percent", "<= 100"),
        ({"groups": [{"count": 0}]}, "$.rollout.groups[0].count", ">= 1"),
        ({"groups": [{"count": 1, "errorThreshold": -1}]},
         "$.rollout.groups[0].errorThreshold", ">= 0"),
        ({"groups": [{"count": 1, "soak": 10**9}]}, "$.rollout.groups[0].soak", "<="),
        ({"groups": [{"tags": ["bad tag"]}]}, "$.rollout.groups[0].tags[0]", "invalid tag"),
        ({"groups": [{"ids": []}]}, "$.rollout.groups[0].ids", "list 1 to"),
        ({"stages": []}, "$.rollout", "stages"),
    ],
)  # fmt: skip
def test_bad_rollouts_are_refused_naming_the_field(
    rollout: dict[str, Any], path: str, words: str
) -> None:
    err = _error(_doc(rollout))
    assert err.path == path
    assert words in str(err)


def test_standing_task_cannot_have_a_rollout() -> None:
    err = _error(_doc({"groups": [{"count": 1}]}, tags=["cam"], follow=True))
    assert err.path == "$.rollout"
    assert "standing" in str(err)


def test_rollout_without_deploy_is_refused() -> None:
    doc: dict[str, Any] = {
        "build": {"host": "b", "commands": ["make"], "artifacts": ["out"]},
        "source": {"task": "t-1"},
        "rollout": {"groups": [{"count": 1}]},
    }
    with pytest.raises(DescriptorError):
        parse_descriptor(doc)
