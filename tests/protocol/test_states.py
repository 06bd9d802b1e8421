"""The per-target state table and the task status summary."""

from __future__ import annotations

import pytest

from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import (
    EVENT_FOR_REPORTED_STATE,
    FINAL_STATES,
    RETRYABLE_STATES,
    TRANSITIONS,
    TargetEvent,
    TargetState,
    TaskStatus,
    can_apply,
    group_failures,
    next_state,
    summarize,
)

S, E = TargetState, TargetEvent


def test_happy_path_reaches_exited() -> None:
    state = S.PENDING
    for event in (E.ANNOUNCE, E.ACCEPT, E.TRANSFER, E.INSTALL, E.INSTALL_OK, E.RUN, E.EXIT_OK):
        state = next_state(state, event)
    assert state is S.EXITED


def test_build_path_reaches_built() -> None:
    state = S.PENDING
    for event in (E.ANNOUNCE, E.ACCEPT, E.TRANSFER, E.BUILD, E.BUILD_OK):
        state = next_state(state, event)
    assert state is S.BUILT


def test_final_states_have_no_way_out_but_an_operator_retry() -> None:
    for state, event in TRANSITIONS:
        if state in FINAL_STATES:
            assert event is E.RETRY and state in RETRYABLE_STATES
    for state in RETRYABLE_STATES:
        assert next_state(state, E.RETRY) is S.PENDING
    assert not can_apply(S.FAILED, E.RETRY) and not can_apply(S.EXITED, E.RETRY)
    assert E.RETRY not in EVENT_FOR_REPORTED_STATE.values()  # agents never report it


def test_illegal_transition_raises_with_names() -> None:
    with pytest.raises(TransitionError, match="'install_ok' is not allowed in state 'pending'"):
        next_state(S.PENDING, E.INSTALL_OK)
    assert not can_apply(S.EXITED, E.RUN)


@pytest.mark.parametrize("state", [S.PENDING, S.ANNOUNCED])
def test_only_unstarted_targets_expire(state: TargetState) -> None:
    assert next_state(state, E.EXPIRE) is S.EXPIRED
    assert not can_apply(S.RUNNING, E.EXPIRE)


def test_stop_allowed_from_every_active_state() -> None:
    for state in (S.INSTALLING, S.INSTALLED, S.RUNNING, S.BUILDING):
        assert next_state(state, E.STOP) is S.STOPPED


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], TaskStatus.PENDING),
        ([S.PENDING, S.PENDING], TaskStatus.PENDING),
        ([S.PENDING, S.INSTALLING], TaskStatus.IN_PROGRESS),
        ([S.RUNNING, S.EXITED], TaskStatus.RUNNING),
        ([S.EXITED, S.EXITED], TaskStatus.SUCCEEDED),
        ([S.EXITED, S.INSTALL_FAILED], TaskStatus.FAILED),
        ([S.STOPPED, S.EXITED], TaskStatus.STOPPED),
        ([S.BUILT], TaskStatus.SUCCEEDED),
    ],
)
def test_summarize(states: list[TargetState], expected: TaskStatus) -> None:
    assert summarize(states) is expected


def test_failures_group_by_identical_state_and_reason_largest_first() -> None:
    from swarmdeploy.protocol.states import FAILURE_SAMPLE

    rows = [(f"d{i:03d}", "install_failed", "No space left on device") for i in range(37)]
    rows += [("x", "declined", "no trust anchor"), ("y", "exited", ""), ("z", "stopped", "by op")]
    rows += [("w", "install_failed", "exit 2")]
    groups = group_failures(rows)
    assert [(g.state, g.reason, g.count) for g in groups] == [
        ("install_failed", "No space left on device", 37),
        ("declined", "no trust anchor", 1),
        ("install_failed", "exit 2", 1),
    ]
    assert len(groups[0].sample) == FAILURE_SAMPLE and groups[0].sample[0] == "d000"
    assert group_failures([]) == []


def test_health_gate_leads_from_running_to_healthy_or_rolled_back() -> None:
    assert next_state(S.RUNNING, E.HEALTH_OK) is S.HEALTHY
    assert next_state(S.RUNNING, E.ROLL_BACK) is S.ROLLED_BACK
    assert S.ROLLED_BACK in FINAL_STATES and S.HEALTHY not in FINAL_STATES
    for event, end in ((E.EXIT_OK, S.EXITED), (E.EXIT_FAIL, S.FAILED), (E.STOP, S.STOPPED)):
        assert next_state(S.HEALTHY, event) is end
    with pytest.raises(TransitionError):
        next_state(S.INSTALLED, E.HEALTH_OK)
    assert EVENT_FOR_REPORTED_STATE[S.ROLLED_BACK] is E.ROLL_BACK
    assert S.ROLLED_BACK not in RETRYABLE_STATES  # it was installed: deploy a new task


def test_healthy_counts_as_running_and_rolled_back_as_failed() -> None:
    assert summarize([S.HEALTHY, S.RUNNING]) is TaskStatus.RUNNING
    assert summarize([S.HEALTHY, S.ROLLED_BACK]) is TaskStatus.RUNNING
    assert summarize([S.ROLLED_BACK, S.EXITED]) is TaskStatus.FAILED
    groups = group_failures([("a", "rolled_back", "GET x: HTTP 500"), ("b", "healthy", "")])
    assert [(g.state, g.count, g.sample) for g in groups] == [("rolled_back", 1, ("a",))]
