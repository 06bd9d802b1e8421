"""The one choke point for per-target task state changes (house style habit 3).

Every change -- from the transport (agent acknowledgements), from an operator's stop, from
expiry -- goes through :meth:`TaskStates.apply`: the transition is looked up in
``protocol.states.TRANSITIONS`` (an illegal one raises ``TransitionError``), persisted with
compare-and-set against the state it was computed from, logged in one line and published as
a ``taskUpdated`` event.

Rows of live deployments are kept in memory (docs/adr/0011-live-deployments-and-group-commit.md):
:meth:`TaskStates.row` reads a row from storage once and then answers from memory; every
change made here updates the remembered row after it was committed, a failed
compare-and-set forgets it (another writer -- another replica, a deletion -- changed it) and
the next read goes to storage. Writes go through :class:`~.group_commit.GroupCommit`: many
agents' reports share one transaction, and each call returns only after its own write
committed. Listeners (:meth:`TaskStates.add_change_listener`) hear of every changed row (the
link drops its delivery grants at once).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.group_commit import GroupCommit
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import (
    FINAL_STATES,
    TargetEvent,
    TargetState,
    event_path,
    next_state,
)
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import StateWrite, TaskTargetRecord

log = logging.getLogger(__name__)

_EXPIRABLE = (TargetState.PENDING.value, TargetState.ANNOUNCED.value)
_CAS_ATTEMPTS = 3
#: Rows remembered at most (all forgotten at once beyond this; they are read again).
_ROWS_MAX = 250_000


def _level(state: TargetState) -> int:
    """The log level of a change to ``state``: INFO for a final state (one line per target
    and task, the outcome), DEBUG for the steps on the way -- a bulk deployment wrote six
    INFO lines per target, about 4 % of the event loop's time (docs/performance.md)."""
    return logging.INFO if state in FINAL_STATES else logging.DEBUG


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """Outcome of an agent's state report: ``ok`` (acknowledge as applied) and the row as
    now stored (``row.state`` is the ``current`` state to tell the agent when refused)."""

    ok: bool
    row: TaskTargetRecord


def row_json(row: TaskTargetRecord, *, task: bool = False) -> dict[str, Any]:
    """A per-target row as the API shows it (with ``task`` for events)."""
    doc: dict[str, Any] = {
        "id": row.target_id,
        "role": row.role,
        "state": row.state,
        "reason": row.reason,
        "updatedAt": row.updated_at,
        "attempt": row.attempt,
    }
    if task:
        doc["task"] = row.task_id
    return doc


class TaskStates:
    """Applies events to (task, target) rows."""

    def __init__(
        self,
        storage: Storage,
        *,
        events: EventHub,
        clock: Clock,
        commits: GroupCommit | None = None,
    ) -> None:
        self._storage = storage
        self._events = events
        self._clock = clock
        self.commits = commits if commits is not None else GroupCommit(storage)
        self._rows: dict[tuple[str, str], TaskTargetRecord] = {}
        self._listeners: list[Callable[[TaskTargetRecord], None]] = []

    def add_change_listener(self, listener: Callable[[TaskTargetRecord], None]) -> None:
        """Call ``listener`` with every row changed through this object (after its commit)."""
        self._listeners.append(listener)

    async def row(self, task_id: str, target_id: str, *, fresh: bool = False) -> TaskTargetRecord:
        """The row of ``target_id`` for ``task_id`` (from memory unless ``fresh``);
        :class:`NotFoundError` if there is none."""
        key = (task_id, target_id)
        row = None if fresh else self._rows.get(key)
        if row is None:
            row = await self._storage.get_task_target(task_id, target_id)
            if row is None:
                self._rows.pop(key, None)
                raise NotFoundError(f"target {target_id} has no part in task {task_id}")
            self._remember(row)
        return row

    def remember(self, rows: Iterable[TaskTargetRecord]) -> None:
        """Rows just read from storage by someone else (e.g. a ``hello``): keep them."""
        for row in rows:
            self._remember(row)

    def forget_task(self, task_id: str) -> None:
        """Drop the remembered rows of a task (deleted)."""
        for key in [k for k in self._rows if k[0] == task_id]:
            del self._rows[key]

    def _remember(self, row: TaskTargetRecord) -> None:
        if len(self._rows) >= _ROWS_MAX:
            self._rows.clear()
        self._rows[(row.task_id, row.target_id)] = row

    async def _write(self, row: TaskTargetRecord, new: str, now: int, reason: str) -> bool:
        """Compare-and-set ``row`` to ``new`` (group commit); remember or forget the row."""
        changed = await self.commits.set_state(
            StateWrite(row.task_id, row.target_id, new, now, reason, (row.state,))
        )
        if not changed:
            self._rows.pop((row.task_id, row.target_id), None)
        return changed

    async def apply(
        self, task_id: str, target_id: str, event: TargetEvent, *, reason: str = ""
    ) -> TaskTargetRecord | None:
        """Apply ``event`` to the row; returns the updated row, or ``None`` when the row
        changed concurrently (re-read and decide again).

        Raises :class:`NotFoundError` for an unknown row and
        :class:`~swarmdeploy.protocol.errors.TransitionError` for a transition the table
        does not allow.
        """
        remembered = (task_id, target_id) in self._rows
        row = await self.row(task_id, target_id)
        for fresh in (False, True):
            if fresh:  # the remembered row may be out of date: decide on the stored one
                if not remembered:
                    return None
                row = await self.row(task_id, target_id, fresh=True)
            current = TargetState(row.state)
            try:
                new = next_state(current, event)
            except TransitionError:
                if fresh or not remembered:
                    raise
                continue
            now = self._clock()
            if await self._write(row, new.value, now, reason):
                updated = dataclasses.replace(row, state=new.value, updated_at=now, reason=reason)
                log.log(
                    _level(new),
                    "task %s on %s: %s -> %s%s",
                    task_id, target_id, current.value, new.value, f" ({reason})" if reason else "",
                    extra={"task": task_id, "target": target_id},
                )  # fmt: skip
                self.publish(updated)
                return updated
        return None

    async def report(
        self, task_id: str, target_id: str, reported: TargetState, *, reason: str = ""
    ) -> Report:
        """Apply an agent's state report (docs/protocol.md §6.4): a repeat of the stored state
        is ``ok`` without change; a state further along is reached through
        :func:`~swarmdeploy.protocol.states.event_path` (lost intermediate reports) and stored
        in one write; an unreachable state is refused (``ok=False``) with the stored state.
        Raises :class:`NotFoundError` for an unknown row."""
        for attempt in range(_CAS_ATTEMPTS):
            row = await self.row(task_id, target_id, fresh=attempt > 0)
            current = TargetState(row.state)
            try:
                path = event_path(current, reported)
            except TransitionError:
                if attempt == 0:
                    continue  # refuse only on the stored row, not a remembered one
                return Report(ok=False, row=row)
            if not path:
                return Report(ok=True, row=row)
            now = self._clock()
            if await self._write(row, reported.value, now, reason):
                updated = dataclasses.replace(
                    row, state=reported.value, updated_at=now, reason=reason
                )
                log.log(
                    _level(reported),
                    "task %s on %s: %s -> %s reported%s",
                    task_id, target_id, current.value, reported.value,
                    f" ({reason})" if reason else "",
                    extra={"task": task_id, "target": target_id},
                )  # fmt: skip
                self.publish(updated)
                return Report(ok=True, row=updated)
        return Report(ok=False, row=await self.row(task_id, target_id, fresh=True))

    async def retry(self, row: TaskTargetRecord) -> TaskTargetRecord | None:
        """Put a row in a final failure state back to ``pending`` as its next attempt
        (event ``retry``); returns the updated row, or ``None`` when it changed concurrently.
        Raises :class:`~swarmdeploy.protocol.errors.TransitionError` if the table forbids it."""
        current = TargetState(row.state)
        next_state(current, TargetEvent.RETRY)
        updated = await self._storage.retry_task_target(
            row.task_id, row.target_id, updated_at=self._clock(), expected=[current.value]
        )
        if updated is not None:
            log.info(
                "task %s on %s: %s -> %s (attempt %d)",
                row.task_id, row.target_id, current.value, updated.state, updated.attempt,
                extra={"task": row.task_id, "target": row.target_id},
            )  # fmt: skip
            self.publish(updated)
        return updated

    async def expire(self) -> list[TaskTargetRecord]:
        """Mark rows of expired tasks that never got past ``announced`` as ``expired``."""
        rows = await self._storage.expire_pending(
            now=self._clock(), states=_EXPIRABLE, new_state=TargetState.EXPIRED.value
        )
        for row in rows:
            self.publish(row)
        if rows:
            log.info("%d task target(s) expired", len(rows))
        return rows

    def publish(self, row: TaskTargetRecord) -> None:
        """Remember one changed row, tell the change listeners and publish a
        ``taskUpdated`` event."""
        self._remember(row)
        for listener in self._listeners:
            listener(row)
        self._events.publish(
            "taskUpdated", row_json(row, task=True), target=row.target_id, task=row.task_id
        )

    def publish_all(self, rows: Sequence[TaskTargetRecord]) -> None:
        """Publish ``taskUpdated`` for several rows."""
        for row in rows:
            self.publish(row)
