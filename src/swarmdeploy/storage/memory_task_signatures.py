"""Signed task manifests of the in-memory storage (no awaits: every call is atomic with
respect to other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

from swarmdeploy.storage.errors import Conflict
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import TaskSignatureRecord


class MemoryTaskSignatures:
    """The task-signature methods of ``MemoryStorage`` (a mixin). Rows outlive their task."""

    _state: StorageState
    _task_signatures: dict[tuple[str, str], TaskSignatureRecord]

    async def last_task_sequence(self) -> int:
        """The highest stored ``sequence`` (0 when none)."""
        require_open(self._state)
        return max((s.sequence for s in self._task_signatures.values()), default=0)

    async def add_task_signature(self, signature: TaskSignatureRecord) -> None:
        """Store it; ``Conflict`` if ``(task_id, kind)`` or its ``sequence`` exists."""
        require_open(self._state)
        key = (signature.task_id, signature.kind)
        if key in self._task_signatures or any(
            s.sequence == signature.sequence for s in self._task_signatures.values()
        ):
            raise Conflict(f"task signature {key!r} or sequence {signature.sequence} exists")
        self._task_signatures[key] = signature

    async def get_task_signature(self, task_id: str, kind: str) -> TaskSignatureRecord | None:
        """The signed manifest or ``None``."""
        require_open(self._state)
        return self._task_signatures.get((task_id, kind))
