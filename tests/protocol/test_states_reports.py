"""Agent state reports and reconciliation paths (docs/protocol.md §5, §6.4)."""

from __future__ import annotations

import itertools

import pytest

from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import (
    EVENT_FOR_REPORTED_STATE,
    TRANSITIONS,
    TargetEvent,
    TargetState,
    event_path,
    next_state,
)

S = TargetState


def test_every_reported_state_is_the_target_of_its_event() -> None:
    for state, event in EVENT_FOR_REPORTED_STATE.items():
        targets = {dst for (_, ev), dst in TRANSITIONS.items() if ev is event}
        assert targets == {state}, (state, event)


def test_manager_only_states_are_not_reportable() -> None:
    assert {S.PENDING, S.ANNOUNCED, S.EXPIRED}.isdisjoint(EVENT_FOR_REPORTED_STATE)


@pytest.mark.parametrize(("current", "reported"), list(itertools.product(S, S)))
def test_event_path_leads_to_the_report_or_refuses(current: S, reported: S) -> None:
    try:
        path = event_path(current, reported)
    except TransitionError:
        assert current is not reported
        return
    state = current
    for event in path:
        assert event in EVENT_FOR_REPORTED_STATE.values()
        state = next_state(state, event)
    assert state is reported


def test_lost_intermediate_reports_are_bridged() -> None:
    assert event_path(S.ACCEPTED, S.RUNNING) == [
        TargetEvent.INSTALL,
        TargetEvent.INSTALL_OK,
        TargetEvent.RUN,
    ]
    assert event_path(S.RUNNING, S.RUNNING) == []


def test_final_states_cannot_be_left() -> None:
    with pytest.raises(TransitionError):
        event_path(S.STOPPED, S.RUNNING)
    with pytest.raises(TransitionError):
        event_path(S.DECLINED, S.ACCEPTED)
