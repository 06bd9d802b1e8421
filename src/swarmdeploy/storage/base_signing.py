"""Operator keys and signed task manifests.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_operator_keys.py`` and ``sql_task_signatures.py`` implement it for both SQL
backends.
"""

from __future__ import annotations

import abc

from swarmdeploy.storage.records import (
    OperatorKeyRecord,
    TaskSignatureRecord,
)


class OperatorKeyStore(abc.ABC):
    """Operator signing keys (ADR 0004)."""

    @abc.abstractmethod
    async def add_operator_key(self, key: OperatorKeyRecord) -> None:
        """Store an operator key. Raises :class:`Conflict` if its id or serial exists."""

    @abc.abstractmethod
    async def get_operator_key(self, key_id: str) -> OperatorKeyRecord | None:
        """The operator key with this id, or ``None``."""

    @abc.abstractmethod
    async def list_operator_keys(self, *, owner: str | None = None) -> list[OperatorKeyRecord]:
        """Operator keys (all, or those of ``owner``), oldest first (``created_at``, ``id``)."""

    @abc.abstractmethod
    async def revoke_operator_key(self, key_id: str, at: int) -> OperatorKeyRecord:
        """Mark the key revoked at ``at`` and return it; revoking it again keeps the first
        time. Raises :class:`NotFound`."""


class TaskSignatureStore(abc.ABC):
    """Signed task manifests and their sequence (ADR 0004)."""

    @abc.abstractmethod
    async def last_task_sequence(self) -> int:
        """The highest ``sequence`` of any stored task signature (0 when none). Signatures
        are kept when their task is deleted, so the number never goes back."""

    @abc.abstractmethod
    async def add_task_signature(self, signature: TaskSignatureRecord) -> None:
        """Store a signed manifest. Raises :class:`Conflict` if ``(task_id, kind)`` or the
        ``sequence`` exists: the caller takes ``last_task_sequence() + 1``, signs and retries
        with a new number on a conflict."""

    @abc.abstractmethod
    async def get_task_signature(self, task_id: str, kind: str) -> TaskSignatureRecord | None:
        """The signed manifest of this kind of the task, or ``None``."""
