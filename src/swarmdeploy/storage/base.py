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
* State that a manager replica needs from another one lives here, not in process memory:
  requests to agents until answered, upload progress, the highest stored log ``seq``
  (``docs/adr/0005-manager-link-state.md``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from swarmdeploy.protocol.selector import Selector
from swarmdeploy.storage.records import (
    ApiKeyRecord,
    ArtifactRecord,
    AuditRecord,
    BatchResult,
    BuildRecord,
    FloorPlanRecord,
    HealthSample,
    IndoorPosition,
    LogQuery,
    LogRecord,
    OperatorKeyRecord,
    Page,
    RequestRecord,
    RequestState,
    RollbackRecord,
    RolloutRecord,
    SortOrder,
    StateCount,
    TargetRecord,
    TaskAppRecord,
    TaskRecord,
    TaskSignatureRecord,
    TaskTargetRecord,
    TokenSetRecord,
    UploadRecord,
    WriteBatch,
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
        selector: Selector | None = None,
    ) -> Page[TargetRecord]:
        """Targets sorted by id. ``tags``: the target must carry all of them (AND).
        ``search``: case-insensitive substring of id or name. ``selector``: the target must
        match it (``docs/selectors.md``; an empty one filters nothing)."""

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
        Keys are never touched. Raises :class:`NotFound`.

        The stored ``updated_at`` grows strictly: it is ``updated_at``, or the previous value
        plus 1 when that is not older (a clock that went back). It is the revision of the
        target's ``config`` (docs/protocol.md §6.8), which agents apply only when newer."""

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

    @abc.abstractmethod
    async def count_targets(self) -> int:
        """Number of registered targets."""

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
    async def add_task_targets(self, task_id: str, targets: Sequence[TaskTargetRecord]) -> int:
        """Add per-target rows to a stored task (a standing release reaching a device that
        matches later); rows of targets the task has already are skipped. Returns how many
        were added. Raises :class:`NotFound` for an unknown task."""

    @abc.abstractmethod
    async def add_task_app(self, record: TaskAppRecord) -> None:
        """Store the app of a task (the row goes with its task). Raises :class:`NotFound`
        for an unknown task and :class:`Conflict` when the task has one already."""

    @abc.abstractmethod
    async def get_task_app(self, task_id: str) -> TaskAppRecord | None:
        """The app of the task, or ``None``."""

    @abc.abstractmethod
    async def list_task_apps(
        self, *, app: str | None = None, standing: bool | None = None
    ) -> list[TaskAppRecord]:
        """App rows of existing tasks, newest first (``created_at``, then task id, both
        descending); only of ``app`` and/or only standing (or not) ones when given."""

    @abc.abstractmethod
    async def add_rollout(self, record: RolloutRecord) -> None:
        """Store the staged rollout of a task (the row goes with its task). Raises
        :class:`NotFound` for an unknown task and :class:`Conflict` when it has one."""

    @abc.abstractmethod
    async def get_rollout(self, task_id: str) -> RolloutRecord | None:
        """The rollout of the task, or ``None``."""

    @abc.abstractmethod
    async def update_rollout(
        self,
        task_id: str,
        *,
        state: str,
        current: int,
        reason: str,
        soak_until: int | None,
        updated_at: int,
    ) -> RolloutRecord | None:
        """Set where the rollout stands (its groups never change); the updated record, or
        ``None`` when the task has no rollout."""

    @abc.abstractmethod
    async def list_rollouts(self, states: Sequence[str]) -> list[RolloutRecord]:
        """Rollouts of existing tasks in one of ``states``, by task id."""

    @abc.abstractmethod
    async def add_rollback(self, record: RollbackRecord) -> None:
        """Store that ``record.task_id`` rolls back ``record.rollback_of`` (the row goes with
        the rollback task). Raises :class:`NotFound` for an unknown rollback task and
        :class:`Conflict` when it has a link already."""

    @abc.abstractmethod
    async def rollback_links(self, task_id: str) -> list[RollbackRecord]:
        """The links of a task both ways: the one naming it as the rollback task and those
        that roll it back, oldest first (``created_at``, then task id)."""

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
    async def task_state_counts(self, task_ids: Sequence[str]) -> dict[str, list[StateCount]]:
        """For each of ``task_ids`` its rows counted by (role, state), sorted by role, then
        by the first target id (tasks without rows are missing); one query for all."""

    @abc.abstractmethod
    async def target_tasks(
        self, target_id: str, *, states: Sequence[str] | None = None
    ) -> list[TaskTargetRecord]:
        """Rows of a target over all tasks (optionally only in ``states``), newest task first."""

    @abc.abstractmethod
    async def recent_task_rows(
        self, target_ids: Sequence[str], *, per_target: int
    ) -> dict[str, list[TaskTargetRecord]]:
        """For each of ``target_ids`` its rows of its ``per_target`` newest tasks, newest
        first (targets without tasks are missing from the answer); one query however many
        targets (the devices list and map show every device's recent outcomes)."""

    @abc.abstractmethod
    async def get_task_target(self, task_id: str, target_id: str) -> TaskTargetRecord | None:
        """The row of ``target_id`` for ``task_id``, or ``None``."""

    @abc.abstractmethod
    async def count_task_targets_by_state(self) -> dict[str, int]:
        """Number of per-target rows in each state (states without rows are left out)."""

    @abc.abstractmethod
    async def count_tasks_by_states(self) -> dict[frozenset[str], int]:
        """Number of tasks for each set of distinct states their rows are in; a task's
        summary status depends on that set only (``protocol.states.summarize``). Tasks
        without rows count under the empty set."""

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
    async def retry_task_target(
        self, task_id: str, target_id: str, *, updated_at: int, expected: Sequence[str]
    ) -> TaskTargetRecord | None:
        """Put one row back to ``pending`` for another attempt: ``reason`` cleared,
        ``attempt`` one higher -- only if its state is one of ``expected`` (compare-and-set).
        Returns the updated row, or ``None`` when no row changed."""

    @abc.abstractmethod
    async def commit_batch(self, batch: WriteBatch) -> BatchResult:
        """Store every write of ``batch`` in one transaction, in order: the state writes
        (each a compare-and-set as in :meth:`set_task_target_state`), the log groups (as in
        :meth:`add_logs`) and the contact updates (as in :meth:`touch_target`, with their
        health samples as in :meth:`add_health_sample`). Either all of it is committed or,
        with an exception, none of it."""

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

    @abc.abstractmethod
    async def max_log_seq(self, target_id: str) -> int:
        """The highest stored ``seq`` of the target's lines, 0 if none (an index lookup on
        ``(target, seq)``)."""

    # -- requests to agents (docs/protocol.md §6.8) --------------------------------------------
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

    # -- build-artifact uploads (docs/protocol.md §6.6) ----------------------------------------
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

    # -- build artifacts and build times (docs/build.md) ---------------------------------------
    @abc.abstractmethod
    async def add_artifacts(self, artifacts: Sequence[ArtifactRecord]) -> int:
        """Store artifact records in one transaction; a record whose ``(task_id, sha256)`` is
        stored already is skipped (a repeated ``built`` report records once). Returns how
        many were stored. Raises :class:`NotFound` (storing nothing) when a task is unknown.
        Deleting the task deletes its artifact records."""

    @abc.abstractmethod
    async def list_artifacts(
        self,
        *,
        task_id: str | None = None,
        sha256: str | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page[ArtifactRecord]:
        """Artifact records, oldest build first (sorted by ``built_at``, ``task_id``,
        ``sha256``), optionally only those of one task and/or with one digest."""

    @abc.abstractmethod
    async def note_build(
        self,
        task_id: str,
        *,
        host: str,
        started_at: int | None = None,
        finished_at: int | None = None,
    ) -> None:
        """Record that the task's build on ``host`` started and/or finished. A time that is
        stored already stays (a repeated report does not move it); ``None`` leaves a time
        as it is. Raises :class:`NotFound` for an unknown task; deleted with the task."""

    @abc.abstractmethod
    async def get_build(self, task_id: str) -> BuildRecord | None:
        """The build times of the task, or ``None`` if none were recorded."""

    # -- blob references (docs/storage.md "Blob lifecycle") ------------------------------------
    @abc.abstractmethod
    async def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        """Those of ``digests`` (SHA-256, lower-case hex) that stored records still need:

        * the source archive of a task (``tasks.source_digest``);
        * an upload record, complete or not (``uploads.sha256``);
        * a build artifact record (``artifacts.sha256``, the ``/artifacts`` catalogue);
        * the signed manifest of an existing task that has neither an archive nor a build
          of its own -- one that reuses another task's artifacts (``source.task``) and keeps
          needing them after that task is deleted. The digest is found anywhere in the
          manifest bytes; signatures of deleted tasks do not count. (Manifests of the other
          tasks name only their own archive and uploads, found above.)

        Read in one transaction: one statement per 300 digests over the digest columns and,
        only while some digests are still unreferenced, one over the manifests of reusing
        tasks. An empty ``digests`` reads nothing."""

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

    # -- operator signing keys (ADR 0004) -------------------------------------------------------
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

    # -- signed task manifests (ADR 0004) -------------------------------------------------------
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

    # -- audit log (issue 9, item 10) ----------------------------------------------------------
    @abc.abstractmethod
    async def last_audit(self) -> AuditRecord | None:
        """The audit entry with the highest ``seq``, or ``None`` when the log is empty."""

    @abc.abstractmethod
    async def add_audit(self, entry: AuditRecord) -> None:
        """Append an entry. Raises :class:`Conflict` if its ``seq`` exists: the caller reads
        :meth:`last_audit`, chains the entry to it and retries on a conflict, so concurrent
        appenders (other replicas) keep the chain linear. Entries are never changed or
        deleted through this interface."""

    @abc.abstractmethod
    async def list_audit(self, *, page: int, per_page: int) -> Page[AuditRecord]:
        """Audit entries in ``seq`` order (oldest first)."""

    # -- health of the backend -----------------------------------------------------------------
    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StorageUnavailable` if the database does not answer."""

    # -- health history ------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_health_sample(self, sample: HealthSample) -> None:
        """Store one sample; a duplicate (target, ``at_ms``) or an unknown target is
        ignored."""

    @abc.abstractmethod
    async def health_samples(self, target_id: str, *, since: int, limit: int) -> list[HealthSample]:
        """The target's samples with ``at_ms >= since``, oldest first; at most ``limit`` (the
        newest ones when there are more)."""

    @abc.abstractmethod
    async def purge_health_samples(self, *, older_than: int) -> int:
        """Delete samples older than ``older_than`` (ms); returns how many."""

    # -- indoor maps ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_floorplan(self, plan: FloorPlanRecord) -> None:
        """Store a floor plan; :class:`Conflict` if its id or name is taken."""

    @abc.abstractmethod
    async def list_floorplans(self) -> list[FloorPlanRecord]:
        """Every plan without its image (``image`` empty), by name."""

    @abc.abstractmethod
    async def get_floorplan(self, plan_id: str) -> FloorPlanRecord | None:
        """One plan with its image, or ``None``."""

    @abc.abstractmethod
    async def delete_floorplan(self, plan_id: str) -> None:
        """Delete the plan and every position on it; :class:`NotFound` if unknown."""

    @abc.abstractmethod
    async def set_indoor_position(self, target_id: str, position: IndoorPosition | None) -> None:
        """Place the target on a plan (replacing its earlier place) or, with ``None``, take
        it off; :class:`NotFound` if the target or the plan is unknown."""

    @abc.abstractmethod
    async def indoor_positions(self, target_ids: Sequence[str]) -> dict[str, IndoorPosition]:
        """The positions of those of ``target_ids`` that have one (one query)."""
