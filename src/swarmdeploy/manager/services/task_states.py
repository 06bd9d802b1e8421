"""The one choke point for per-target task state changes (house style habit 3).

Every change -- from the transport (agent acknowledgements), from an operator's stop, from
expiry -- goes through :meth:`TaskStates.apply`: the transition is looked up in
``protocol.states.TRANSITIONS`` (an illegal one raises ``TransitionError``), persisted with
compare-and-set against the state it was computed from, logged in one line and published as
a ``taskUpdated`` event.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.events import EventHub
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.states import TargetEvent, TargetState, event_path, next_state
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TaskTargetRecord

log = logging.getLogger(__name__)

_EXPIRABLE = (TargetState.PENDING.value, TargetState.ANNOUNCED.value)
_CAS_ATTEMPTS = 3


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

    def __init__(self, storage: Storage, *, events: EventHub, clock: Clock) -> None:
        self._storage = storage
        self._events = events
        self._clock = clock

    async def row(self, task_id: str, target_id: str) -> TaskTargetRecord:
        """The row of ``target_id`` for ``task_id``; :class:`NotFoundError` if there is none."""
        row = await self._storage.get_task_target(task_id, target_id)
        if row is None:
            raise NotFoundError(f"target {target_id} has no part in task {task_id}")
        return row

    async def apply(
        self, task_id: str, target_id: str, event: TargetEvent, *, reason: str = ""
    ) -> TaskTargetRecord | None:
        """Apply ``event`` to the row; returns the updated row, or ``None`` when the row
        changed concurrently (re-read and decide again).

        Raises :class:`NotFoundError` for an unknown row and
        :class:`~swarmdeploy.protocol.errors.TransitionError` for a transition the table
        does not allow.
        """
        row = await self.row(task_id, target_id)
        current = TargetState(row.state)
        new = next_state(current, event)
        now = self._clock()
        changed = await self._storage.set_task_target_state(
            task_id,
            target_id,
            state=new.value,
            updated_at=now,
            reason=reason,
            expected=[current.value],
        )
        if not changed:
            return None
        updated = dataclasses.replace(row, state=new.value, updated_at=now, reason=reason)
        log.info(
            "task %s on %s: %s -> %s%s",
            task_id, target_id, current.value, new.value, f" ({reason})" if reason else "",
            extra={"task": task_id, "target": target_id},
        )  # fmt: skip
        self.publish(updated)
        return updated

    async def report(
        self, task_id: str, target_id: str, reported: TargetState, *, reason: str = ""
    ) -> Report:
        """Apply an agent's state report (docs/protocol.md §6.4): a repeat of the stored state
        is ``ok`` without change; a state further along is reached through
        :func:`~swarmdeploy.protocol.states.event_path` (lost intermediate reports) and stored
        in one write; an unreachable state is refused (``ok=False``) with the stored state.
        Raises :class:`NotFoundError` for an unknown row."""
        for _ in range(_CAS_ATTEMPTS):
            row = await self.row(task_id, target_id)
            current = TargetState(row.state)
            try:
                path = event_path(current, reported)
            except TransitionError:
                return Report(ok=False, row=row)
            if not path:
                return Report(ok=True, row=row)
            now = self._clock()
            if await self._storage.set_task_target_state(
                task_id,
                target_id,
                state=reported.value,
                updated_at=now,
                reason=reason,
                expected=[current.value],
            ):
                updated = dataclasses.replace(
                    row, state=reported.value, updated_at=now, reason=reason
                )
                log.info(
                    "task %s on %s: %s -> %s reported%s",
                    task_id, target_id, current.value, reported.value,
                    f" ({reason})" if reason else "",
                    extra={"task": task_id, "target": target_id},
                )  # fmt: skip
                self.publish(updated)
                return Report(ok=True, row=updated)
        return Report(ok=False, row=await self.row(task_id, target_id))

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
        """Publish a ``taskUpdated`` event for one changed row."""
        self._events.publish(
            "taskUpdated", row_json(row, task=True), target=row.target_id, task=row.task_id
        )

    def publish_all(self, rows: Sequence[TaskTargetRecord]) -> None:
        """Publish ``taskUpdated`` for several rows."""
        for row in rows:
            self.publish(row)
