"""A deployment's progress from its task document (``GET /tasks/{id}``): the stages of the
progress tree (seed figure 21), failures grouped by identical reason, what is still waiting.

Used by the GUI's progress view (and meant for the CLI's live display); the grouping itself is
``protocol.states.group_failures``, as in the API. Pure functions over the API's JSON; the
state names come from :mod:`swarmdeploy.protocol.states`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from swarmdeploy.protocol.states import FAILURE_SAMPLE, FINAL_STATES, FailureGroup, group_failures
from swarmdeploy.protocol.states import TargetState as S

#: Stage of the progress tree for each per-target state (``docs/protocol.md`` §5).
STAGE_OF: dict[S, str] = {
    S.PENDING: "announce",
    S.ANNOUNCED: "announce",
    S.ACCEPTED: "announce",
    S.DECLINED: "announce",
    S.EXPIRED: "announce",
    S.TRANSFERRING: "transfer",
    S.INSTALLING: "install",
    S.INSTALLED: "install",
    S.INSTALL_FAILED: "install",
    S.RUNNING: "run",
    S.EXITED: "run",
    S.FAILED: "run",
    S.STOPPED: "run",
    S.BUILDING: "build",
    S.BUILT: "build",
    S.BUILD_FAILED: "build",
}
#: ``other`` holds states this client does not know (a newer manager): shown, never dropped.
STAGES = ("build", "announce", "transfer", "install", "run", "other")
#: How many device ids a failure group keeps for display.
SAMPLE = FAILURE_SAMPLE


@dataclasses.dataclass(frozen=True)
class Progress:
    """Counts of one deployment, ready to draw."""

    total: int
    by_state: dict[str, int]
    #: stage -> state -> sorted device ids (only stages and states that have devices)
    tree: dict[str, dict[str, list[str]]]
    failures: tuple[FailureGroup, ...]  # largest group first
    succeeded: int
    failed: int
    stopped: int
    waiting: tuple[str, ...]  # devices not in a final state (running counts as settled)
    finished: bool

    @property
    def settled(self) -> bool:
        """Whether no device is still on its way (every one final or running): what a
        follower waits for."""
        return not self.waiting

    @property
    def all_succeeded(self) -> bool:
        """Whether there are devices and every one succeeded (exited 0, running, installed
        or built): the condition of exit status 0 of ``tasks watch``."""
        return self.total > 0 and self.succeeded == self.total

    def summary(self) -> str:
        """One line: how many succeeded, failed, were stopped or still wait."""
        if self.total == 0:
            return "no target matched the task"
        parts = [f"{self.succeeded} of {self.total} target(s) succeeded"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.stopped:
            parts.append(f"{self.stopped} stopped")
        if self.waiting:
            parts.append(f"{len(self.waiting)} still waiting")
        return ", ".join(parts)

    @property
    def done_fraction(self) -> float:
        """Share of devices that reached a final or running state (0..1)."""
        return 1.0 if self.total == 0 else (self.total - len(self.waiting)) / self.total


def progress(task: dict[str, Any]) -> Progress:
    """The progress of the task document ``task`` (``targets: [{id, state, reason}]``)."""
    targets = task.get("targets") or []
    by_state: Counter[str] = Counter()
    tree: dict[str, dict[str, list[str]]] = {}
    waiting: list[str] = []
    for row in targets:
        name = str(row["state"])
        by_state[name] += 1
        state = S(name) if name in S._value2member_map_ else None
        stage = STAGE_OF[state] if state is not None else "other"
        tree.setdefault(stage, {}).setdefault(name, []).append(row["id"])
        if state is not None and state not in FINAL_STATES and state is not S.RUNNING:
            waiting.append(row["id"])
    ordered = {stage: tree[stage] for stage in STAGES if stage in tree}
    for states in ordered.values():
        for ids in states.values():
            ids.sort()
    failures = group_failures(
        (row["id"], str(row["state"]), row.get("reason") or "") for row in targets
    )
    good = {S.EXITED.value, S.RUNNING.value, S.INSTALLED.value, S.BUILT.value}
    return Progress(
        total=len(targets),
        by_state=dict(by_state),
        tree=ordered,
        failures=tuple(failures),
        succeeded=sum(n for s, n in by_state.items() if s in good),
        failed=sum(g.count for g in failures),
        stopped=by_state.get(S.STOPPED.value, 0),
        waiting=tuple(sorted(waiting)),
        finished=not waiting and not by_state.get(S.RUNNING.value, 0),
    )
