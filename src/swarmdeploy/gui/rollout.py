"""A staged rollout as the task page shows it (docs/rollouts.md): a summary line, one row per
group, and which operator actions the rollout's state allows. Pure functions of the task
document (``GET /tasks/{id}``), no NiceGUI, unit-tested.

The actions are one table (:data:`ACTIONS`): the API route each calls, the button's label,
the confirmation it asks for and the rollout states it is offered in. The API checks the same
conditions again (409 naming the problem); the table only keeps buttons that would be refused
anyway greyed out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from swarmdeploy.gui.rows import printable

#: Rollout states in which nothing more will ever be announced.
ENDED = frozenset({"aborted", "completed"})


@dataclasses.dataclass(frozen=True)
class Action:
    """One operator action on a rollout: ``POST /tasks/{id}/{name}`` with an empty JSON body."""

    name: str
    label: str
    #: The confirmation dialog's question.
    question: str
    #: Whether the action is offered for this task document (its ``rollout`` is not None).
    offered: Callable[[Mapping[str, Any]], bool]
    #: Quasar colour of the button.
    color: str = "primary"


def _state(task: Mapping[str, Any]) -> str:
    return str(task["rollout"]["state"])


def _stopped(task: Mapping[str, Any]) -> bool:
    return task.get("status") == "stopped" or task.get("stoppedAt") is not None


def _failed(task: Mapping[str, Any]) -> int:
    return sum(int(g.get("failed", 0)) for g in task["rollout"]["groups"])


def _announced(task: Mapping[str, Any]) -> int:
    return sum(int(g["size"]) - int(g.get("notAnnounced", 0)) for g in task["rollout"]["groups"])


ACTIONS: tuple[Action, ...] = (
    Action(
        "pause",
        "Pause",
        "Pause the rollout? Nothing more is announced until it is resumed; devices that "
        "have the task keep it.",
        lambda t: _state(t) == "running" and not _stopped(t),
    ),
    Action(
        "resume",
        "Resume",
        "Resume the rollout? The current group's devices not announced yet are announced, "
        "and its thresholds are counted again (a halted rollout halts again unless fewer of "
        "its devices fail now).",
        lambda t: _state(t) in {"paused", "halted"} and not _stopped(t),
    ),
    Action(
        "abort",
        "Abort",
        "Abort the rollout? Devices not announced yet end stopped and never get the task; "
        "devices that have it keep it (Stop stops them).",
        lambda t: _state(t) not in ENDED and not _stopped(t),
        color="warning",
    ),
    Action(
        "retry",
        "Retry failed",
        "Announce the task again to the devices on which it failed?",
        lambda t: _failed(t) > 0 and not _stopped(t),
    ),
    Action(
        "rollback",
        "Roll back",
        "Roll back? The previous release of the app is deployed, as one new task, to every "
        "device that got this one.",
        lambda t: _announced(t) > 0,
        color="negative",
    ),
)


def offered(task: Mapping[str, Any]) -> dict[str, bool]:
    """Action name -> whether its button is enabled, for a task with a rollout."""
    return {action.name: action.offered(task) for action in ACTIONS}


def group_state(rollout: Mapping[str, Any], index: int) -> str:
    """Where group ``index`` stands: ``done`` (an earlier group than the current one),
    the rollout's state for the current group (``soaking`` while its soak runs),
    ``waiting`` for a later one, or ``not announced`` once the rollout was aborted."""
    state = str(rollout["state"])
    current = int(rollout["currentGroup"])
    if state == "completed" or index < current:
        return "done"
    if index > current:
        return "not announced" if state == "aborted" else "waiting"
    if state == "running" and rollout.get("soakUntil") is not None:
        return "soaking"
    return state


def _thresholds(group: Mapping[str, Any]) -> str:
    parts = []
    if group.get("successThreshold") is not None:
        parts.append(f"success ≥ {group['successThreshold']:g} %")
    if group.get("errorThreshold") is not None:
        parts.append(f"errors ≤ {group['errorThreshold']:g} %")
    if group.get("soak"):
        parts.append(f"soak {group['soak']} s")
    return ", ".join(parts) or "defaults"


def group_rows(rollout: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table row per group, in rollout order."""
    rows = []
    for i, group in enumerate(rollout["groups"]):
        counts = group.get("stateCounts") or {}
        rows.append(
            {
                "key": str(i),
                "name": printable(group["name"]),
                "state": group_state(rollout, i),
                "size": group["size"],
                "succeeded": group.get("succeeded", 0),
                "failed": group.get("failed", 0),
                "notAnnounced": group.get("notAnnounced", 0),
                "thresholds": _thresholds(group),
                "states": ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
            }
        )
    return rows


def summary(rollout: Mapping[str, Any], now_ms: int) -> str:
    """``"Rollout running · group 1 of 3 (canary)"``, with the soak's end while it runs."""
    groups = rollout["groups"]
    current = int(rollout["currentGroup"])
    text = f"Rollout {rollout['state']}"
    if groups and rollout["state"] != "completed":
        name = printable(groups[min(current, len(groups) - 1)]["name"])
        text += f" · group {current + 1} of {len(groups)} ({name})"
    soak_until = rollout.get("soakUntil")
    if soak_until is not None and rollout["state"] == "running":
        text += f" · soak ends in {max(0, (int(soak_until) - now_ms) // 1000)} s"
    return text
