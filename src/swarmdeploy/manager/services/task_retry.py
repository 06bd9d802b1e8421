"""Which (task, target) pairs a retry puts back (``POST /tasks/{id}/retry``, issue 13).

A pair that ended in a final failure state (:data:`~swarmdeploy.protocol.states.RETRYABLE_STATES`:
``declined``, ``install_failed``, ``expired``) goes back to ``pending`` with its
``attempt`` one higher (:meth:`TaskStates.retry`), and the link announces the task again; the
signed manifest stays the same. The agent assesses an announcement again when its
``attempt`` is higher than the one it ended the task with (docs/protocol.md §6.3).

:func:`choose` is the pure decision; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmdeploy.manager.errors import ConflictError, NotFoundError
from swarmdeploy.protocol.states import RETRYABLE_STATES, TargetState
from swarmdeploy.storage.records import TaskRecord, TaskTargetRecord

_NAMES = ", ".join(sorted(s.value for s in RETRYABLE_STATES))


def _retryable(row: TaskTargetRecord) -> bool:
    return row.role == "deploy" and TargetState(row.state) in RETRYABLE_STATES


def choose(
    task: TaskRecord,
    rows: Sequence[TaskTargetRecord],
    wanted: Sequence[str] | None,
    *,
    now_ms: int,
) -> list[TaskTargetRecord]:
    """The rows to retry: the ``wanted`` target ids, or every deploy target in a retryable
    state when ``wanted`` is ``None``.

    Raises :class:`NotFoundError` for a wanted id that has no part in the task, and
    :class:`ConflictError` for a stopped or expired task (the signed manifest carries the
    deadline), a wanted target that is not in a retryable state, or nothing to retry.
    """
    if task.stopped_at is not None:
        raise ConflictError(f"task {task.id} was stopped; submit it again as a new task")
    if task.expires_at <= now_ms:
        raise ConflictError(
            f"task {task.id} is past its deadline (its signed manifest expired); "
            "submit it again as a new task"
        )
    by_id = {r.target_id: r for r in rows}
    if wanted is None:
        chosen = [r for r in rows if _retryable(r)]
        if not chosen:
            raise ConflictError(f"task {task.id} has no target to retry (none is {_NAMES})")
        return chosen
    unknown = [t for t in wanted if t not in by_id]
    if unknown:
        raise NotFoundError(f"target(s) {', '.join(unknown)} have no part in task {task.id}")
    refused = [f"{t} is {by_id[t].state}" for t in wanted if not _retryable(by_id[t])]
    if refused:
        raise ConflictError(
            f"cannot retry task {task.id} on {'; '.join(refused)} "
            f"(a retry needs a deploy target that is {_NAMES})"
        )
    return [by_id[t] for t in dict.fromkeys(wanted)]
