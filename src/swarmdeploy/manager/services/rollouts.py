"""Staged rollouts (issue 15, docs/rollouts.md): a deploy task announced group by group.

A task whose descriptor has a ``rollout`` section gets its groups fixed when it is created
(:func:`plan_groups`, stored as a :class:`~swarmdeploy.storage.records.RolloutRecord`); a
device registered later is not pulled in. Only the rows of groups up to the current one may
be announced: the task service hands only the first group's rows to its listeners, and the
agent link's delivery asks :meth:`Rollouts.admits` before it announces any row (at creation
and at every ``hello``), so a device of a later group hears of the task only when its group
starts.

:meth:`Rollouts.step` (run every :data:`STEP_INTERVAL_S` by a background job, so a restarted
manager goes on from the stored state) counts the current group: once more than its
``errorThreshold`` percent failed, were declined, expired or rolled back, the rollout
**halts** with the reason (nothing more is announced; devices already running are left as
they are); once its ``successThreshold`` percent are ``running``/``exited``/``healthy`` and
still are when the group's ``soak`` seconds have passed, the next group starts. Operators
pause, resume and abort (:meth:`Rollouts.pause`, :meth:`Rollouts.resume`,
:meth:`Rollouts.abort`), each audited; every change is published as ``rolloutUpdated``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import msgspec

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import ConflictError, InvalidInput, NotFoundError
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.protocol.descriptor import Rollout, RolloutGroup
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import FAILED_STATES, TargetEvent
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import RolloutRecord, TaskRecord, TaskTargetRecord

log = logging.getLogger(__name__)

#: How often running rollouts are counted (seconds).
STEP_INTERVAL_S = 1.0
#: States counting towards a group's success threshold.
SUCCESS_STATES = frozenset({"running", "exited", "healthy"})
#: States counting towards a group's error threshold (``rolled_back``: the agent's health
#: check failed and it went back to the previous release).
FAILURE_STATES = frozenset({s.value for s in FAILED_STATES} | {"rolled_back"})
#: Rollout states in which the rollout still goes on by itself.
RUNNING = "running"
PAUSED = "paused"
HALTED = "halted"
ABORTED = "aborted"
COMPLETED = "completed"
_OPEN = (RUNNING, PAUSED, HALTED)
#: How long a rollout read from storage is trusted for :meth:`Rollouts.admits` (ms); this
#: replica's own changes are seen at once.
_CACHE_MS = 2000
_CACHE_MAX = 4096


class RowAnnouncer(Protocol):
    """Hands rows of a stored task to the task listeners (``TaskService``)."""

    async def announce_rows(self, task: TaskRecord, rows: list[TaskTargetRecord]) -> None:
        """Tell the listeners about ``rows`` of ``task`` as if the task were new."""


class StateApplier(Protocol):
    """The per-target state choke point (``TaskStates``)."""

    async def apply(
        self, task_id: str, target_id: str, event: TargetEvent, *, reason: str = ""
    ) -> TaskTargetRecord | None:
        """Apply ``event`` to the row (see ``TaskStates.apply``)."""


def plan_groups(
    rollout: Rollout, matches: Sequence[str], tags_of: dict[str, frozenset[str]]
) -> tuple[tuple[str, ...], ...]:
    """The members of each group: chosen in order among the matched targets (by id) not in
    an earlier group; targets no group chose form one more group at the end. Raises
    :class:`InvalidInput` for a listed id that is not a matched target."""
    left = sorted(set(matches))
    total = len(left)
    matched = set(left)
    groups: list[tuple[str, ...]] = []
    for i, group in enumerate(rollout.groups):
        if group.ids is not None:
            for j, target in enumerate(group.ids):
                if target not in matched:
                    raise InvalidInput(
                        f"{target} is not a target of the task (deploy.target)",
                        path=f"$.rollout.groups[{i}].ids[{j}]",
                    )
            wanted = set(group.ids)
            chosen = [t for t in left if t in wanted]
        elif group.tags is not None:
            named = set(group.tags)
            chosen = [t for t in left if tags_of.get(t, frozenset()) & named]
        elif group.count is not None:
            chosen = left[: group.count]
        elif group.percent is not None:
            chosen = left[: math.ceil(total * group.percent / 100)]
        else:
            chosen = list(left)
        taken = set(chosen)
        left = [t for t in left if t not in taken]
        groups.append(tuple(chosen))
    if left:
        groups.append(tuple(left))
    return tuple(groups)


def group_spec(rollout: Rollout, index: int) -> RolloutGroup:
    """The settings of group ``index`` (the extra group of the rest has the last one's)."""
    return rollout.groups[min(index, len(rollout.groups) - 1)]


def group_name(rollout: Rollout, index: int) -> str:
    """The group's name, or its number (``rest`` for the extra group)."""
    if index >= len(rollout.groups):
        return "rest"
    return rollout.groups[index].name or str(index + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class GroupCount:
    """How a group stands: its size and members succeeded, failed and not announced yet."""

    size: int
    succeeded: int
    failed: int
    waiting: int

    def crossed(self, spec: RolloutGroup) -> bool:
        """More than the error threshold failed."""
        return self.size > 0 and self.failed * 100 > spec.error_threshold * self.size

    def holds(self, spec: RolloutGroup) -> bool:
        """At least the success threshold succeeded."""
        return self.succeeded * 100 >= spec.success_threshold * self.size


def count_group(members: Iterable[str], states: dict[str, str]) -> GroupCount:
    """Count a group's members by their rows' states (``states``: target id -> state)."""
    size = succeeded = failed = waiting = 0
    for target in members:
        size += 1
        state = states.get(target, "")
        if state in SUCCESS_STATES:
            succeeded += 1
        elif state in FAILURE_STATES:
            failed += 1
        elif state == "pending":
            waiting += 1
    return GroupCount(size, succeeded, failed, waiting)


def rollout_of(task: TaskRecord) -> Rollout | None:
    """The validated ``rollout`` section of a stored task, or ``None``."""
    section = task.descriptor.get("rollout")
    if not isinstance(section, dict):
        return None
    return msgspec.convert(section, Rollout)


def rollout_json(
    task: TaskRecord, record: RolloutRecord, rows: Iterable[TaskTargetRecord]
) -> dict[str, Any]:
    """The ``rollout`` part of a task document: state, reason and per-group counts."""
    spec = rollout_of(task)
    states = {r.target_id: r.state for r in rows if r.role == "deploy"}
    groups = []
    for i, members in enumerate(record.groups):
        counted = count_group(members, states)
        settings = group_spec(spec, i) if spec is not None else None
        groups.append(
            {
                "name": group_name(spec, i) if spec is not None else str(i + 1),
                "size": counted.size,
                "succeeded": counted.succeeded,
                "failed": counted.failed,
                "notAnnounced": counted.waiting,
                "successThreshold": settings.success_threshold if settings else None,
                "errorThreshold": settings.error_threshold if settings else None,
                "soak": settings.soak if settings else None,
                "stateCounts": _state_counts(members, states),
            }
        )
    return {
        "state": record.state,
        "currentGroup": record.current,
        "reason": record.reason,
        "soakUntil": record.soak_until,
        "updatedAt": record.updated_at,
        "groups": groups,
    }


def _state_counts(members: Iterable[str], states: dict[str, str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for target in members:
        state = states.get(target, "unknown")
        found[state] = found.get(state, 0) + 1
    return found


class Rollouts:
    """Staged rollouts of one manager (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        events: EventHub,
        clock: Clock,
        audit: AuditLog,
        states: StateApplier,
    ) -> None:
        self._storage = storage
        self._events = events
        self._clock = clock
        self._audit = audit
        self._states = states
        self._announcer: RowAnnouncer | None = None
        #: task id -> (rollout, target -> group index, read at ms)
        self._cache: dict[str, tuple[RolloutRecord, dict[str, int], int]] = {}

    def attach(self, announcer: RowAnnouncer) -> None:
        """Where rows of a group that starts are handed (the task service)."""
        self._announcer = announcer

    # -- creation --------------------------------------------------------------------------
    async def create(self, task: TaskRecord, groups: tuple[tuple[str, ...], ...]) -> RolloutRecord:
        """Store the rollout of a new task, its first group current."""
        record = RolloutRecord(
            task_id=task.id, groups=groups, state=RUNNING, current=0, updated_at=self._clock()
        )
        await self._storage.add_rollout(record)
        self._remember(record)
        return record

    # -- the gate ----------------------------------------------------------------------------
    async def admits(self, task: TaskRecord, row: TaskTargetRecord) -> bool:
        """Whether the row may be announced now: always for a task without a rollout (and
        for a build host), else only in a group up to the current one of a running or
        completed rollout (not before the rollout is stored)."""
        if row.role != "deploy" or "rollout" not in task.descriptor:
            return True
        record, index = await self._cached(row.task_id)
        if record is None:
            return False
        if record.state == COMPLETED:
            return True
        group = index.get(row.target_id)
        return record.state == RUNNING and group is not None and group <= record.current

    async def _cached(self, task_id: str) -> tuple[RolloutRecord | None, dict[str, int]]:
        now = self._clock()
        cached = self._cache.get(task_id)
        if cached is not None and now - cached[2] < _CACHE_MS:
            return cached[0], cached[1]
        record = await self._storage.get_rollout(task_id)
        if record is None:  # not stored yet, or the task is gone: read again next time
            self._cache.pop(task_id, None)
            return None, {}
        return record, self._remember(record)

    def _remember(self, record: RolloutRecord) -> dict[str, int]:
        cached = self._cache.get(record.task_id)
        index = cached[1] if cached is not None and cached[1] else None
        if index is None:
            index = {t: i for i, members in enumerate(record.groups) for t in members}
        self._put(record.task_id, (record, index, self._clock()))
        return index

    def _put(self, task_id: str, entry: tuple[RolloutRecord, dict[str, int], int]) -> None:
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[task_id] = entry

    # -- progress ----------------------------------------------------------------------------
    async def step_all(self) -> int:
        """Count every running rollout once (the background job); returns how many moved."""
        moved = 0
        for record in await self._storage.list_rollouts([RUNNING]):
            try:
                if await self.step(record.task_id) is not None:
                    moved += 1
            except Exception:  # top of the job loop: one broken rollout must not stop others
                log.exception("rollout of task %s could not be counted", record.task_id)
        return moved

    async def step(self, task_id: str) -> RolloutRecord | None:
        """Count the current group of a running rollout: halt it, start its soak, start the
        next group or complete it. Returns the changed record, or ``None`` if nothing
        changed."""
        record = await self._storage.get_rollout(task_id)
        task = await self._storage.get_task(task_id)
        if record is None or task is None or record.state != RUNNING:
            return None
        spec = rollout_of(task)
        if spec is None:
            return None
        if task.stopped_at is not None:
            return await self._set(record, ABORTED, record.current, "the task was stopped")
        rows = await self._storage.task_targets(task_id)
        states = {r.target_id: r.state for r in rows if r.role == "deploy"}
        return await self._advance(task, spec, record, states)

    async def _advance(
        self, task: TaskRecord, spec: Rollout, record: RolloutRecord, states: dict[str, str]
    ) -> RolloutRecord | None:
        now = self._clock()
        index = record.current
        settings = group_spec(spec, index)
        counted = count_group(record.groups[index], states)
        name = group_name(spec, index)
        if counted.crossed(settings):
            reason = (
                f"group {name}: {counted.failed} of {counted.size} target(s) failed, more than "
                f"the error threshold of {settings.error_threshold:g} %"
            )
            return await self._set(record, HALTED, index, reason)
        if not counted.holds(settings):
            if record.soak_until is None:
                return None
            return await self._set(record, RUNNING, index, "", soak_until=None)
        if record.soak_until is None and settings.soak > 0:
            return await self._set(
                record, RUNNING, index, "", soak_until=now + settings.soak * 1000
            )
        if record.soak_until is not None and now < record.soak_until:
            return None
        if index + 1 >= len(record.groups):
            return await self._set(record, COMPLETED, index, "")
        started = await self._set(record, RUNNING, index + 1, "")
        if started is not None:
            await self._announce_group(task, started)
        return started

    async def _announce_group(self, task: TaskRecord, record: RolloutRecord) -> None:
        """Hand the rows of the (new) current group to the announcer."""
        if self._announcer is None:
            return
        members = set(record.groups[record.current])
        rows = [
            r
            for r in await self._storage.task_targets(task.id)
            if r.role == "deploy" and r.target_id in members and r.state == "pending"
        ]
        log.info("task %s: rollout group %d of %d starts (%d target(s))",
                 task.id, record.current + 1, len(record.groups), len(rows))  # fmt: skip
        if rows:
            await self._announcer.announce_rows(task, rows)

    async def _set(
        self,
        record: RolloutRecord,
        state: str,
        current: int,
        reason: str,
        *,
        soak_until: int | None = None,
    ) -> RolloutRecord | None:
        updated = await self._storage.update_rollout(
            record.task_id,
            state=state,
            current=current,
            reason=reason,
            soak_until=soak_until,
            updated_at=self._clock(),
        )
        if updated is None:
            self._cache.pop(record.task_id, None)
            return None
        self._remember(updated)
        if updated.state != record.state or updated.current != record.current:
            log.info("task %s: rollout %s, group %d of %d%s",
                     record.task_id, state, current + 1, len(record.groups),
                     f" ({reason})" if reason else "")  # fmt: skip
        self._events.publish(
            "rolloutUpdated",
            {
                "task": record.task_id,
                "state": updated.state,
                "currentGroup": updated.current,
                "reason": updated.reason,
                "soakUntil": updated.soak_until,
            },
            task=record.task_id,
        )
        return updated

    # -- operator actions --------------------------------------------------------------------
    async def _open(self, task_id: str) -> tuple[TaskRecord, RolloutRecord]:
        task = await self._storage.get_task(task_id)
        if task is None:
            raise NotFoundError(f"task {task_id} is not found")
        record = await self._storage.get_rollout(task_id)
        if record is None:
            raise ConflictError(f"task {task_id} has no rollout (it was announced all at once)")
        return task, record

    async def pause(self, task_id: str, by: Principal) -> RolloutRecord:
        """Announce nothing more until resumed. :class:`ConflictError` unless running."""
        _, record = await self._open(task_id)
        if record.state != RUNNING:
            raise ConflictError(f"the rollout of task {task_id} is {record.state}, not running")
        entry = await self._audit.append(by, "task.pause", task_id)
        updated = await self._set(
            record, PAUSED, record.current, f"paused by {by.audit_name} (audit #{entry.seq})"
        )
        return self._or_gone(task_id, updated)

    async def resume(self, task_id: str, by: Principal) -> RolloutRecord:
        """Go on with a paused or halted rollout (a halted one halts again unless fewer than
        its error threshold still fail: retry the failed devices first), announcing the
        current group's devices not announced yet. :class:`ConflictError` otherwise."""
        task, record = await self._open(task_id)
        if record.state not in (PAUSED, HALTED):
            raise ConflictError(
                f"the rollout of task {task_id} is {record.state}, not paused or halted"
            )
        if task.stopped_at is not None:
            raise ConflictError(f"task {task_id} is stopped")
        await self._audit.append(by, "task.resume", task_id, {"from": record.state})
        updated = self._or_gone(task_id, await self._set(record, RUNNING, record.current, ""))
        await self._announce_group(task, updated)
        return updated

    async def abort(self, task_id: str, by: Principal) -> RolloutRecord:
        """End the rollout: devices not announced yet are ``stopped`` and never get the
        task; devices that have it keep it. :class:`ConflictError` when it has ended."""
        _, record = await self._open(task_id)
        if record.state not in _OPEN:
            raise ConflictError(f"the rollout of task {task_id} is {record.state} already")
        entry = await self._audit.append(by, "task.abort", task_id)
        reason = f"rollout aborted by {by.audit_name} (audit #{entry.seq})"
        updated = self._or_gone(task_id, await self._set(record, ABORTED, record.current, reason))
        try:
            rows = await self._storage.task_targets(task_id)
        except NotFound:
            return updated
        for row in rows:
            if row.role == "deploy" and row.state == "pending":
                try:
                    await self._states.apply(
                        task_id, row.target_id, TargetEvent.STOP, reason="rollout aborted"
                    )
                except (NotFoundError, TransitionError) as exc:
                    log.debug("abort of task %s on %s skipped: %s", task_id, row.target_id, exc)
        return updated

    @staticmethod
    def _or_gone(task_id: str, record: RolloutRecord | None) -> RolloutRecord:
        if record is None:
            raise NotFoundError(f"task {task_id} is not found")
        return record
