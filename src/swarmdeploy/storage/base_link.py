"""What the agent link writes: requests to agents, uploads, batched reports.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_link.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swarmdeploy.storage.records import (
    BatchResult,
    RequestRecord,
    RequestState,
    UploadRecord,
    WriteBatch,
)


class RequestStore(abc.ABC):
    """Requests to agents until answered (docs/protocol.md §6.8)."""

    @abc.abstractmethod
    async def add_request(
        self,
        request: RequestRecord,
        *,
        max_open: int | None = None,
        counted_kinds: Sequence[str] | None = None,
        supersede: bool = False,
    ) -> bool:
        """Store ``request``. Returns ``False`` and stores nothing when ``max_open`` is given
        and the target has that many open (``pending``/``sent``) requests already -- of the
        ``counted_kinds`` only, when given; the check and the insert are atomic per target.
        ``supersede`` first deletes the target's open requests of the same kind and any
        earlier request with the same id (one open ``config`` per target). Raises
        :class:`NotFound` for an unknown target and :class:`Conflict` when the target has a
        request with this id already."""

    @abc.abstractmethod
    async def get_request(self, target_id: str, request_id: str) -> RequestRecord | None:
        """The request, or ``None``."""

    @abc.abstractmethod
    async def open_requests(self, target_id: str) -> list[RequestRecord]:
        """The target's ``pending`` and ``sent`` requests in the order they were stored."""

    @abc.abstractmethod
    async def mark_requests_sent(self, target_id: str, request_ids: Sequence[str]) -> int:
        """Move those of the requests that are ``pending`` to ``sent``; returns how many."""

    @abc.abstractmethod
    async def finish_request(
        self,
        target_id: str,
        request_id: str,
        *,
        state: RequestState,
        at: int,
        message: str = "",
    ) -> RequestRecord | None:
        """Move an open request to the final ``state`` (``acked``, ``refused`` or
        ``expired``), compare-and-set: returns the finished request, or ``None`` when it is
        unknown or finished already (a repeated answer is applied once). Raises
        :class:`ValueError` for a state that is not final."""

    @abc.abstractmethod
    async def expire_requests(self, target_id: str, *, now: int) -> list[RequestRecord]:
        """Move the target's open requests whose ``expires_at`` is at or before ``now`` to
        ``expired`` (``acked_at = now``); returns them in the order they were stored."""

    @abc.abstractmethod
    async def targets_with_expired_requests(self, *, now: int) -> list[str]:
        """Ids of targets (sorted) with open requests whose ``expires_at <= now``."""

    @abc.abstractmethod
    async def delete_requests(self, target_id: str) -> int:
        """Delete every request of the target; returns how many."""

    @abc.abstractmethod
    async def purge_requests(self, *, older_than: int) -> int:
        """Retention: delete finished requests with ``acked_at < older_than``; returns how
        many. Open requests are never purged."""


class UploadStore(abc.ABC):
    """Progress of build-artifact uploads (docs/protocol.md §6.6)."""

    @abc.abstractmethod
    async def start_upload(self, upload: UploadRecord) -> None:
        """Store the record of a new upload, replacing any record of the same
        ``(task_id, sha256)`` (starting over). Raises :class:`NotFound` for an unknown task.
        Deleting the task deletes its upload records."""

    @abc.abstractmethod
    async def get_upload(self, task_id: str, sha256: str) -> UploadRecord | None:
        """The upload record, or ``None``."""

    @abc.abstractmethod
    async def list_uploads(self, task_id: str) -> list[UploadRecord]:
        """The task's upload records sorted by ``(name, sha256)``."""

    @abc.abstractmethod
    async def advance_upload(
        self,
        task_id: str,
        sha256: str,
        *,
        expected_next: int,
        next_index: int,
        complete: bool = False,
    ) -> bool:
        """Set ``next_index`` and ``complete`` if the stored ``next_index`` is
        ``expected_next`` and the upload is not complete (compare-and-set); returns whether
        it changed."""

    @abc.abstractmethod
    async def delete_upload(self, task_id: str, sha256: str) -> bool:
        """Delete one upload record; returns whether there was one."""


class WriteBatchStore(abc.ABC):
    """The agent link's group commit: many reports in one transaction."""

    @abc.abstractmethod
    async def commit_batch(self, batch: WriteBatch) -> BatchResult:
        """Store every write of ``batch`` in one transaction, in order: the state writes
        (each a compare-and-set as in :meth:`set_task_target_state`), the log groups (as in
        :meth:`add_logs`) and the contact updates (as in :meth:`touch_target`, with their
        health samples as in :meth:`add_health_sample`). Either all of it is committed or,
        with an exception, none of it."""
