"""Selectors: text form, matching, and the descriptor fields that build them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmdeploy.protocol.descriptor import parse_descriptor
from swarmdeploy.protocol.errors import DescriptorError
from swarmdeploy.protocol.selector import Selector, parse_selector

_names = st.sampled_from(["a", "b", "c", "d"])


def test_text_form_parses_every_kind_of_term() -> None:
    sel = parse_selector("camera, gateway +outdoor,!lab,id:cam-7,!id:cam-3")
    assert sel == Selector(("cam-7",), ("camera", "gateway"), ("outdoor",), ("lab",), ("cam-3",))


def test_original_meaning_id_or_any_tag() -> None:
    sel = Selector.of(ids=["x"], tags=["swarm"])
    assert sel.matches("x", [])
    assert sel.matches("y", ["swarm", "lab"])
    assert not sel.matches("y", ["lab"])


def test_all_of_and_negation() -> None:
    sel = parse_selector("+camera,+outdoor,!lab")
    assert sel.matches("any", ["camera", "outdoor"])
    assert not sel.matches("any", ["camera"])
    assert not sel.matches("any", ["camera", "outdoor", "lab"])


def test_empty_selector_matches_nobody() -> None:
    assert not Selector().matches("x", ["a"])
    assert parse_selector("  ").empty


@pytest.mark.parametrize("text", ["+", "!", "id:", "bad/tag", "!id:..x", "-x"])
def test_bad_term_is_refused_naming_it(text: str) -> None:
    with pytest.raises(DescriptorError) as err:
        parse_selector(text)
    assert repr(text.lstrip("+!").removeprefix("id:")) in str(err.value) or text in str(err.value)


@given(
    st.lists(_names, max_size=2),
    st.lists(_names, max_size=2),
    st.lists(_names, max_size=2),
    st.lists(_names, max_size=2),
)
def test_text_form_round_trips(
    ids: list[str], tags: list[str], all_tags: list[str], not_tags: list[str]
) -> None:
    sel = Selector.of(ids, tags, all_tags, not_tags)
    assert parse_selector(sel.to_text()) == sel


def test_descriptor_merges_lists_and_select() -> None:
    desc = parse_descriptor(
        {
            "app": "detector",
            "version": "2.3",
            "deploy": {
                "run": {"commands": ["true"]},
                "target": {"tags": ["camera"], "select": "+outdoor,!lab", "follow": True},
            },
        }
    )
    assert desc.selector == Selector.of(tags=["camera"], all_tags=["outdoor"], not_tags=["lab"])
    assert desc.standing and desc.app_name == "detector"
    assert desc.expires_in_s == 365 * 24 * 3600


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"target": {"not": ["lab"]}}, "$.deploy.target"),
        ({"target": {"tags": ["a"], "remove": True}}, "$.deploy.target.remove"),
        ({"target": {"tags": ["a"], "all": ["b c"]}}, "$.deploy.target.all[0]"),
        ({"target": {"select": "a,+"}}, "$.deploy.target.select: '+'"),
        ({"target": {"tags": ["a"]}, "app": "../x"}, "$.app"),
        ({"target": {"tags": ["a"]}, "version": " "}, "$.version"),
    ],
)
def test_bad_target_or_app_names_the_field(doc: dict[str, object], path: str) -> None:
    deploy: dict[str, object] = {"run": {"commands": ["true"]}, "target": doc["target"]}
    full = {k: v for k, v in doc.items() if k != "target"} | {"deploy": deploy}
    with pytest.raises(DescriptorError) as err:
        parse_descriptor(full)
    assert err.value.path == path


def test_task_without_app_is_the_default_app() -> None:
    desc = parse_descriptor({"deploy": {"run": {"commands": ["x"]}, "target": {"ids": ["a"]}}})
    assert desc.app_name == "default" and not desc.standing
    assert desc.expires_in_s == 7 * 24 * 3600
