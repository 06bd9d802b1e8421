"""Per-target task states and the transition table shared by manager and agent.

Each (task, target) pair has one state. A build host has a pair too, with the ``build_*``
states. The table is the single source of truth: :func:`next_state` applies an event and
raises :class:`~swarmdeploy.protocol.errors.TransitionError` for anything the table does not
list. States are persisted and sent by name (their ``value``). See ``docs/protocol.md``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable

from swarmdeploy.protocol.errors import TransitionError


class TargetState(enum.StrEnum):
    """Where one target stands with one task."""

    PENDING = "pending"  # matched, not yet announced (target offline or queue)
    ANNOUNCED = "announced"  # announcement sent, no answer yet
    ACCEPTED = "accepted"  # agent assessed the announcement and accepted
    DECLINED = "declined"  # agent declined (reason stored)  -- final
    TRANSFERRING = "transferring"  # payload chunks on their way
    INSTALLING = "installing"
    INSTALLED = "installed"  # install finished; run commands about to start (or none)
    INSTALL_FAILED = "install_failed"  # final; the previous deployment keeps running
    RUNNING = "running"
    EXITED = "exited"  # all run commands ended with status 0  -- final
    FAILED = "failed"  # a run command failed for good  -- final
    STOPPED = "stopped"  # stopped by an operator or replaced by a newer task  -- final
    EXPIRED = "expired"  # never came online before the task's deadline  -- final
    BUILDING = "building"  # build host runs the build commands
    BUILT = "built"  # artifacts received and stored  -- final (for the build host)
    BUILD_FAILED = "build_failed"  # final
    # deploy.health (docs/protocol.md §5 "Health-gated installs"):
    HEALTHY = "healthy"  # the health checks passed; run commands keep running
    ROLLED_BACK = "rolled_back"  # checks failed; the previous release runs again  -- final


class TargetEvent(enum.StrEnum):
    """What can happen to a (task, target) pair."""

    ANNOUNCE = "announce"
    ACCEPT = "accept"
    DECLINE = "decline"
    TRANSFER = "transfer"
    INSTALL = "install"
    INSTALL_OK = "install_ok"
    INSTALL_FAIL = "install_fail"
    RUN = "run"
    EXIT_OK = "exit_ok"
    EXIT_FAIL = "exit_fail"
    STOP = "stop"
    EXPIRE = "expire"
    BUILD = "build"
    BUILD_OK = "build_ok"
    BUILD_FAIL = "build_fail"
    RETRY = "retry"  # an operator retries a failed pair: announced again as a new attempt
    HEALTH_OK = "health_ok"  # deploy.health: the checks passed
    ROLL_BACK = "roll_back"  # deploy.health: the checks failed, the previous release restored


S, E = TargetState, TargetEvent

#: Terminal states: nothing but a new task changes them.
FINAL_STATES: frozenset[TargetState] = frozenset(
    {
        S.DECLINED,
        S.INSTALL_FAILED,
        S.EXITED,
        S.FAILED,
        S.STOPPED,
        S.EXPIRED,
        S.BUILT,
        S.BUILD_FAILED,
        S.ROLLED_BACK,
    }
)

#: States in which processes of the task may be alive on the target.
ACTIVE_STATES: frozenset[TargetState] = frozenset(
    {S.TRANSFERRING, S.INSTALLING, S.INSTALLED, S.RUNNING, S.HEALTHY, S.BUILDING}
)

_BEFORE_RUN = (S.PENDING, S.ANNOUNCED, S.ACCEPTED, S.TRANSFERRING, S.INSTALLING)

TRANSITIONS: dict[tuple[TargetState, TargetEvent], TargetState] = {
    (S.PENDING, E.ANNOUNCE): S.ANNOUNCED,
    (S.ANNOUNCED, E.ANNOUNCE): S.ANNOUNCED,  # re-announcement after a reconnect
    (S.ANNOUNCED, E.ACCEPT): S.ACCEPTED,
    (S.PENDING, E.ACCEPT): S.ACCEPTED,  # answer to an announcement sent before a restart
    (S.ANNOUNCED, E.DECLINE): S.DECLINED,
    (S.PENDING, E.DECLINE): S.DECLINED,
    (S.ACCEPTED, E.TRANSFER): S.TRANSFERRING,
    (S.TRANSFERRING, E.TRANSFER): S.TRANSFERRING,  # resumed transfer
    (S.ACCEPTED, E.INSTALL): S.INSTALLING,  # nothing to transfer
    (S.TRANSFERRING, E.INSTALL): S.INSTALLING,
    (S.INSTALLING, E.INSTALL_OK): S.INSTALLED,
    (S.INSTALLING, E.INSTALL_FAIL): S.INSTALL_FAILED,
    (S.TRANSFERRING, E.INSTALL_FAIL): S.INSTALL_FAILED,  # bad payload (digest, archive)
    (S.INSTALLED, E.RUN): S.RUNNING,
    (S.RUNNING, E.RUN): S.RUNNING,  # restarted after an agent restart or autoRestart
    (S.INSTALLED, E.EXIT_OK): S.EXITED,  # no run commands
    (S.RUNNING, E.EXIT_OK): S.EXITED,
    (S.RUNNING, E.EXIT_FAIL): S.FAILED,
    (S.INSTALLED, E.EXIT_FAIL): S.FAILED,  # installed, but the run commands could not start
    (S.ACCEPTED, E.BUILD): S.BUILDING,
    (S.TRANSFERRING, E.BUILD): S.BUILDING,
    (S.BUILDING, E.BUILD_OK): S.BUILT,
    (S.BUILDING, E.BUILD_FAIL): S.BUILD_FAILED,
    (S.TRANSFERRING, E.BUILD_FAIL): S.BUILD_FAILED,
}
# --- deploy.health (docs/protocol.md §5): running -> healthy | rolled_back ---------------
TRANSITIONS.update(
    {
        (S.RUNNING, E.HEALTH_OK): S.HEALTHY,
        (S.RUNNING, E.ROLL_BACK): S.ROLLED_BACK,
        (S.HEALTHY, E.EXIT_OK): S.EXITED,
        (S.HEALTHY, E.EXIT_FAIL): S.FAILED,
    }
)
for _state in (*_BEFORE_RUN, S.INSTALLED, S.RUNNING, S.HEALTHY, S.BUILDING):
    TRANSITIONS[(_state, E.STOP)] = S.STOPPED
for _state in (S.PENDING, S.ANNOUNCED):
    TRANSITIONS[(_state, E.EXPIRE)] = S.EXPIRED
#: Final failure states an operator may retry (``POST /tasks/{id}/retry``): those in which
#: the task never became the target's deployment. Not ``failed`` (its install is the
#: target's current deployment: deploy again with a new task) nor a build host's
#: ``build_failed`` (its deploy targets wait on the artifacts of one build).
RETRYABLE_STATES: frozenset[TargetState] = frozenset({S.DECLINED, S.INSTALL_FAILED, S.EXPIRED})
for _state in RETRYABLE_STATES:
    TRANSITIONS[(_state, E.RETRY)] = S.PENDING


def next_state(state: TargetState, event: TargetEvent) -> TargetState:
    """Return the state that ``event`` leads to from ``state``.

    Raises :class:`TransitionError` when the table has no such transition.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TransitionError(
            f"event {event.value!r} is not allowed in state {state.value!r}"
        ) from None


def can_apply(state: TargetState, event: TargetEvent) -> bool:
    """Whether ``event`` is allowed in ``state``."""
    return (state, event) in TRANSITIONS


class TaskStatus(enum.StrEnum):
    """Summary status of a whole task, derived from its targets' states."""

    PENDING = "pending"  # nothing has started
    IN_PROGRESS = "in_progress"
    RUNNING = "running"  # every live target runs; none still installing
    SUCCEEDED = "succeeded"  # every target finished well (exited / installed / built)
    FAILED = "failed"  # every target finished, some badly
    STOPPED = "stopped"


def summarize(states: list[TargetState]) -> TaskStatus:
    """Derive the task status from its per-target states (empty list: ``pending``)."""
    if not states or all(s is S.PENDING for s in states):
        return TaskStatus.PENDING
    bad = FAILED_STATES
    if all(s in FINAL_STATES for s in states):
        if any(s is S.STOPPED for s in states) and not any(s in bad for s in states):
            return TaskStatus.STOPPED
        return TaskStatus.FAILED if any(s in bad for s in states) else TaskStatus.SUCCEEDED
    live = {S.RUNNING, S.HEALTHY}
    if all(s in FINAL_STATES | live for s in states) and any(s in live for s in states):
        return TaskStatus.RUNNING
    return TaskStatus.IN_PROGRESS


# --- Agent reports (docs/protocol.md §5, §6.4) -------------------------------------------

#: The event an agent's ``state`` report stands for. States missing here (``pending``,
#: ``announced``, ``expired``) are reached only by the manager.
EVENT_FOR_REPORTED_STATE: dict[TargetState, TargetEvent] = {
    S.ACCEPTED: E.ACCEPT,
    S.DECLINED: E.DECLINE,
    S.TRANSFERRING: E.TRANSFER,
    S.INSTALLING: E.INSTALL,
    S.INSTALLED: E.INSTALL_OK,
    S.INSTALL_FAILED: E.INSTALL_FAIL,
    S.RUNNING: E.RUN,
    S.EXITED: E.EXIT_OK,
    S.FAILED: E.EXIT_FAIL,
    S.STOPPED: E.STOP,
    S.BUILDING: E.BUILD,
    S.BUILT: E.BUILD_OK,
    S.BUILD_FAILED: E.BUILD_FAIL,
    S.HEALTHY: E.HEALTH_OK,
    S.ROLLED_BACK: E.ROLL_BACK,
}


def event_path(current: TargetState, reported: TargetState) -> list[TargetEvent]:
    """The shortest list of events that leads from ``current`` to ``reported``.

    Used when an agent reports a state whose intermediate reports were lost (stored
    ``accepted``, reported ``running``: ``transfer, install, install_ok, run``). The empty
    list means ``reported`` is already the stored state (an idempotent repeat). Only the
    events of :data:`EVENT_FOR_REPORTED_STATE` are followed, so a path never passes through
    a state that only the manager may reach. Raises :class:`TransitionError` when
    ``reported`` cannot be reached from ``current``.
    """
    if current is reported:
        return []
    agent_events = set(EVENT_FOR_REPORTED_STATE.values())
    paths: dict[TargetState, list[TargetEvent]] = {current: []}
    frontier = [current]
    while frontier:  # breadth-first: the table is small (a few dozen edges)
        following: list[TargetState] = []
        for state in frontier:
            for (src, event), dst in TRANSITIONS.items():
                if src is not state or event not in agent_events or dst in paths:
                    continue
                paths[dst] = [*paths[state], event]
                if dst is reported:
                    return paths[dst]
                following.append(dst)
        frontier = following
    raise TransitionError(f"state {reported.value!r} cannot be reached from {current.value!r}")


# --- Failures of a deployment, grouped by reason (API ``failures``, GUI, CLI) -------------

#: Final states that count as failures (``stopped`` is neither success nor failure); a
#: ``rolled_back`` release failed its health checks, so it counts as one too.
FAILED_STATES: frozenset[TargetState] = frozenset(
    {S.DECLINED, S.INSTALL_FAILED, S.FAILED, S.EXPIRED, S.BUILD_FAILED, S.ROLLED_BACK}
)
#: How many target ids a failure group names.
FAILURE_SAMPLE = 20


@dataclasses.dataclass(frozen=True)
class FailureGroup:
    """Targets that ended in the same failed ``state`` for the same ``reason``."""

    state: str
    reason: str
    count: int
    sample: tuple[str, ...]  # the first :data:`FAILURE_SAMPLE` target ids, sorted


def group_failures(rows: Iterable[tuple[str, str, str]]) -> list[FailureGroup]:
    """``(target id, state, reason)`` rows -> the failed ones grouped by identical state and
    reason, largest group first ("37 targets install_failed: No space left on device")."""
    groups: dict[tuple[str, str], list[str]] = {}
    for target_id, state, reason in rows:
        if state in _FAILED_NAMES:
            groups.setdefault((state, reason), []).append(target_id)
    found = [
        FailureGroup(state, reason, len(ids), tuple(sorted(ids)[:FAILURE_SAMPLE]))
        for (state, reason), ids in groups.items()
    ]
    return sorted(found, key=lambda g: (-g.count, g.state, g.reason))


_FAILED_NAMES = frozenset(s.value for s in FAILED_STATES)
