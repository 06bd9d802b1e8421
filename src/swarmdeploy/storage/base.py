"""The :class:`Storage` interface every backend implements.

Contract (checked by ``tests/storage/test_contract.py`` against every backend):

* Every method is a coroutine; every returned record is a fresh immutable value.
* Lists are ``Page`` objects; ``page`` starts at 1; ``per_page`` is at most
  ``records.MAX_PER_PAGE``.
* Unique-key violations raise :class:`Conflict`, missing records :class:`NotFound` where a
  method says so (getters return ``None`` instead), driver errors are translated into
  :class:`StorageUnavailable`.
* Registration consumes a token and creates the target in **one** transaction: of two
  concurrent registrations with one token exactly one succeeds.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from swarmdeploy.storage.records import (
    ApiKeyRecord,
    LogQuery,
    LogRecord,
    Page,
    SortOrder,
    TargetRecord,
    TaskRecord,
    TaskTargetRecord,
    TokenSetRecord,
)

#: Marker for "leave this field unchanged" in partial updates.
UNCHANGED: Any = object()


class Storage(abc.ABC):
    """Persistence of targets, tasks, per-target task states, logs, tokens and API keys."""

    # -- lifecycle -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (alembic migrations)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    # -- targets -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def get_target(self, target_id: str) -> TargetRecord | None:
        """The target with this id, or ``None``."""

    @abc.abstractmethod
    async def list_targets(
        self,
        *,
        tags: Sequence[str] = (),
        search: str | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page[TargetRecord]:
        """Targets sorted by id. ``tags``: the target must carry all of them (AND).
        ``search``: case-insensitive substring of id or name."""

    @abc.abstractmethod
    async def update_target(
        self,
        target_id: str,
        *,
        name: Any = UNCHANGED,
        tags: Any = UNCHANGED,
        location: Any = UNCHANGED,
        updated_at: int,
    ) -> TargetRecord:
        """Partial update: only the given fields change (``location=None`` clears it).
        Keys are never touched. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def touch_target(
        self, target_id: str, *, seen_at: int, health: dict[str, Any] | None = None
    ) -> None:
        """Record that the agent was heard from (and its latest health report, if given).
        Unknown ids are ignored."""

    @abc.abstractmethod
    async def set_log_request_at(self, target_id: str, at: int) -> None:
        """Remember the time of the newest log received on request."""

    @abc.abstractmethod
    async def delete_target(self, target_id: str) -> TargetRecord:
        """Delete the target (its logs stay). Returns what was deleted; raises :class:`NotFound`."""

    @abc.abstractmethod
    async def match_targets(
        self, ids: Sequence[str], tags: Sequence[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """All targets whose id is in ``ids`` or that carry any tag in ``tags``, without any
        paging limit, sorted by id. Each item is ``(target_id, matching_tags)``; the tuple is
        empty when the target matched by id only."""

    @abc.abstractmethod
    async def target_curve_keys(self) -> list[tuple[str, str]]:
        """``(target_id, curve_key)`` for every registered target (for the ZAP allow-list)."""

    # -- registration tokens -------------------------------------------------------------------
    @abc.abstractmethod
    async def create_token_set(
        self, name: str, token_hashes: Sequence[bytes], *, created_at: int, expires_at: int
    ) -> TokenSetRecord:
        """Store a token set with the hashes of its tokens. Raises :class:`Conflict` if the
        name is taken."""

    @abc.abstractmethod
    async def get_token_set(self, name: str, *, now: int) -> TokenSetRecord | None:
        """The set with ``available`` = unspent tokens that expire after ``now``."""

    @abc.abstractmethod
    async def list_token_sets(
        self, *, now: int, page: int = 1, per_page: int = 100
    ) -> Page[TokenSetRecord]:
        """Token sets sorted by creation time, newest first."""

    @abc.abstractmethod
    async def delete_token_set(self, name: str) -> None:
        """Delete a set and its unspent tokens. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def purge_expired_tokens(self, *, now: int) -> int:
        """Delete tokens that expired at or before ``now``; returns how many."""

    @abc.abstractmethod
    async def register_target(
        self, token_hash: bytes, target: TargetRecord, *, now: int
    ) -> TargetRecord:
        """Atomically spend the token with this hash and create ``target`` (its
        ``token_set`` filled in). Raises :class:`TokenRejected` if the token is unknown,
        expired or spent, :class:`Conflict` if the target id or its ``curve_key`` is
        registered already (the token is then *not* spent)."""

    # -- tasks ---------------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_task(self, task: TaskRecord, targets: Sequence[TaskTargetRecord]) -> None:
        """Store a task with its initial per-target rows. Raises :class:`Conflict`."""

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> TaskRecord | None:
        """The task, or ``None``."""

    @abc.abstractmethod
    async def list_tasks(
        self,
        *,
        search: str | None = None,
        sort_order: SortOrder = "asc",
        page: int = 1,
        per_page: int = 100,
    ) -> Page[TaskRecord]:
        """Tasks sorted by ``created_at``. ``search``: full-text over the description
        (every word must occur)."""

    @abc.abstractmethod
    async def delete_task(self, task_id: str) -> None:
        """Delete the task, its per-target rows and its logs. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def mark_task_stopped(self, task_id: str, at: int) -> None:
        """Set ``stopped_at``. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def task_targets(self, task_id: str) -> list[TaskTargetRecord]:
        """Per-target rows of a task sorted by (role, target_id); build host first."""

    @abc.abstractmethod
    async def target_tasks(
        self, target_id: str, *, states: Sequence[str] | None = None
    ) -> list[TaskTargetRecord]:
        """Rows of a target over all tasks (optionally only in ``states``), newest task first."""

    @abc.abstractmethod
    async def set_task_target_state(
        self,
        task_id: str,
        target_id: str,
        *,
        state: str,
        updated_at: int,
        reason: str = "",
        expected: Sequence[str] | None = None,
    ) -> bool:
        """Set the state of one row. When ``expected`` is given the update happens only if the
        current state is one of them (compare-and-set); returns whether a row changed."""

    @abc.abstractmethod
    async def expire_pending(
        self, *, now: int, states: Sequence[str], new_state: str
    ) -> list[TaskTargetRecord]:
        """Move every row in ``states`` whose task expired at or before ``now`` to
        ``new_state``; returns the changed rows (with the new state)."""

    # -- logs ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_logs(self, logs: Sequence[LogRecord]) -> int:
        """Bulk insert. Lines whose (target, seq) is stored already are skipped. Returns the
        number of lines stored."""

    @abc.abstractmethod
    async def query_logs(self, query: LogQuery) -> Page[LogRecord]:
        """Logs matching ``query``."""

    @abc.abstractmethod
    async def purge_logs(
        self, *, older_than: int | None = None, keep_rows: int | None = None
    ) -> int:
        """Retention: delete logs with ``time < older_than`` and/or all but the newest
        ``keep_rows`` lines. Returns how many were deleted."""

    @abc.abstractmethod
    async def count_logs(self) -> int:
        """Number of stored log lines."""

    # -- API keys ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_api_key(self, key: ApiKeyRecord) -> None:
        """Store an API key. Raises :class:`Conflict` if the id or name exists."""

    @abc.abstractmethod
    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id (the public prefix of the token), or ``None``."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """All API keys sorted by name."""

    @abc.abstractmethod
    async def delete_api_key(self, key_id: str) -> None:
        """Delete a key. Raises :class:`NotFound`."""

    @abc.abstractmethod
    async def touch_api_key(self, key_id: str, at: int) -> None:
        """Record the last use of a key."""

    # -- health of the backend -----------------------------------------------------------------
    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StorageUnavailable` if the database does not answer."""
