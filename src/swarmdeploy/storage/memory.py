"""In-memory :class:`Storage` for fast unit tests of manager logic.

It follows the same contract as the SQL backends (checked by the shared contract suite) but
keeps everything in dictionaries of this process. Every method runs without awaiting, so each
call is atomic with respect to other tasks of the event loop, which gives the same
"exactly one registration wins" guarantee as the SQL transactions.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from swarmdeploy.protocol.selector import Selector
from swarmdeploy.storage import memory_logs
from swarmdeploy.storage.base import UNCHANGED, Storage
from swarmdeploy.storage.common import check_page, fts_words, unique_tags
from swarmdeploy.storage.errors import Conflict, NotFound, TokenRejected
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.memory_apps import MemoryApps
from swarmdeploy.storage.memory_artifacts import ArtifactStore, MemoryArtifacts
from swarmdeploy.storage.memory_audit import MemoryAudit
from swarmdeploy.storage.memory_health import MemoryHealth
from swarmdeploy.storage.memory_indoor import MemoryIndoor
from swarmdeploy.storage.memory_link import MemoryLink, RequestStore, UploadStore
from swarmdeploy.storage.memory_operator_keys import MemoryOperatorKeys
from swarmdeploy.storage.memory_rollouts import MemoryRollouts
from swarmdeploy.storage.memory_task_signatures import MemoryTaskSignatures
from swarmdeploy.storage.records import (
    ApiKeyRecord,
    AuditRecord,
    BatchResult,
    FloorPlanRecord,
    HealthSample,
    IndoorPosition,
    LogQuery,
    LogRecord,
    OperatorKeyRecord,
    Page,
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
    WriteBatch,
)


@dataclasses.dataclass(slots=True)
class _TokenSet:
    total: int
    created_at: int
    expires_at: int


T = TypeVar("T")


def _page(items: Sequence[T], page: int, per_page: int) -> Page[T]:
    offset = check_page(page, per_page)
    return Page(
        total=len(items),
        items=list(items[offset : offset + per_page]),
        page=page,
        per_page=per_page,
    )


def _fresh_target(target: TargetRecord) -> TargetRecord:
    return dataclasses.replace(target, health=copy.deepcopy(target.health))


def _fresh_task(task: TaskRecord) -> TaskRecord:
    return dataclasses.replace(task, descriptor=copy.deepcopy(task.descriptor))


class MemoryStorage(
    MemoryLink,
    MemoryApps,
    MemoryRollouts,
    MemoryArtifacts,
    MemoryOperatorKeys,
    MemoryTaskSignatures,
    MemoryHealth,
    MemoryIndoor,
    MemoryAudit,
    Storage,
):
    """A complete :class:`Storage` kept in process memory (lost when the object goes)."""

    def __init__(self) -> None:
        self._state = StorageState.NEW
        self._targets: dict[str, TargetRecord] = {}
        self._token_sets: dict[str, _TokenSet] = {}
        self._tokens: dict[bytes, tuple[str, int]] = {}  # hash -> (set name, expires_at)
        self._tasks: dict[str, TaskRecord] = {}
        self._task_words: dict[str, frozenset[str]] = {}
        self._task_targets: dict[tuple[str, str], TaskTargetRecord] = {}
        self._logs = memory_logs.LogStore()
        self._api_keys: dict[str, ApiKeyRecord] = {}
        self._health: dict[str, dict[int, HealthSample]] = {}
        self._floorplans: dict[str, FloorPlanRecord] = {}
        self._positions: dict[str, IndoorPosition] = {}
        self._requests = RequestStore()
        self._uploads = UploadStore()
        self._artifacts = ArtifactStore()
        self._operator_keys: dict[str, OperatorKeyRecord] = {}
        self._task_signatures: dict[tuple[str, str], TaskSignatureRecord] = {}
        self._task_apps: dict[str, TaskAppRecord] = {}
        self._rollouts: dict[str, RolloutRecord] = {}
        self._rollbacks: dict[str, RollbackRecord] = {}
        self._audit: list[AuditRecord] = []

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Mark the storage open (data survives ``close()`` and a later ``open()``)."""
        self._state = StorageState.OPEN

    async def close(self) -> None:
        """Mark the storage closed; later calls raise ``StorageUnavailable``. Idempotent."""
        self._state = StorageState.CLOSED

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless open."""
        require_open(self._state)

    # -- targets -------------------------------------------------------------------------------
    async def get_target(self, target_id: str) -> TargetRecord | None:
        """The target with this id, or ``None``."""
        require_open(self._state)
        target = self._targets.get(target_id)
        return None if target is None else _fresh_target(target)

    async def list_targets(
        self,
        *,
        tags: Sequence[str] = (),
        search: str | None = None,
        page: int = 1,
        per_page: int = 100,
        selector: Selector | None = None,
    ) -> Page[TargetRecord]:
        """Targets sorted by id, filtered by all ``tags``, a substring ``search`` and the
        ``selector``."""
        require_open(self._state)
        check_page(page, per_page)
        wanted = set(tags)
        needle = (search or "").lower()
        found = [
            _fresh_target(t)
            for _, t in sorted(self._targets.items())
            if wanted.issubset(t.tags)
            and (needle in t.id.lower() or needle in t.name.lower())
            and (selector is None or selector.empty or selector.matches(t.id, t.tags))
        ]
        return _page(found, page, per_page)

    async def update_target(
        self,
        target_id: str,
        *,
        name: Any = UNCHANGED,
        tags: Any = UNCHANGED,
        location: Any = UNCHANGED,
        updated_at: int,
    ) -> TargetRecord:
        """Partial update of name, tags and location; raises ``NotFound``."""
        require_open(self._state)
        target = self._targets.get(target_id)
        if target is None:
            raise NotFound(f"target {target_id!r} not found")
        revision = updated_at if updated_at > target.updated_at else target.updated_at + 1
        changes: dict[str, Any] = {"updated_at": revision}
        if name is not UNCHANGED:
            changes["name"] = name
        if tags is not UNCHANGED:
            changes["tags"] = unique_tags(tags)
        if location is not UNCHANGED:
            changes["location"] = location
        self._targets[target_id] = dataclasses.replace(target, **changes)
        return _fresh_target(self._targets[target_id])

    async def touch_target(
        self, target_id: str, *, seen_at: int, health: dict[str, Any] | None = None
    ) -> None:
        """Record the last contact (and health report); unknown ids are ignored."""
        require_open(self._state)
        target = self._targets.get(target_id)
        if target is None:
            return
        new_health = copy.deepcopy(health) if health is not None else target.health
        self._targets[target_id] = dataclasses.replace(
            target, last_seen_at=seen_at, health=new_health
        )

    async def set_log_request_at(self, target_id: str, at: int) -> None:
        """Remember the time of the newest requested log; unknown ids are ignored."""
        require_open(self._state)
        target = self._targets.get(target_id)
        if target is not None:
            self._targets[target_id] = dataclasses.replace(target, log_request_at=at)

    async def delete_target(self, target_id: str) -> TargetRecord:
        """Delete the target (logs and per-task rows stay as history); raises ``NotFound``."""
        require_open(self._state)
        target = self._targets.pop(target_id, None)
        if target is None:
            raise NotFound(f"target {target_id!r} not found")
        self._requests.delete_target(target_id)
        self.forget_health(target_id)
        self.forget_position(target_id)
        return target

    async def match_targets(
        self, ids: Sequence[str], tags: Sequence[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Targets named in ``ids`` or carrying any of ``tags``, with their matching tags."""
        require_open(self._state)
        wanted_ids, wanted_tags = set(ids), set(tags)
        found = []
        for target_id, target in sorted(self._targets.items()):
            matching = tuple(sorted(wanted_tags.intersection(target.tags)))
            if matching or target_id in wanted_ids:
                found.append((target_id, matching))
        return found

    async def target_curve_keys(self) -> list[tuple[str, str]]:
        """``(target_id, curve_key)`` of every target, sorted by id."""
        require_open(self._state)
        return [(t.id, t.curve_key) for _, t in sorted(self._targets.items())]

    async def count_targets(self) -> int:
        """Number of registered targets."""
        require_open(self._state)
        return len(self._targets)

    # -- registration tokens -------------------------------------------------------------------
    def _token_set_record(self, name: str, ts: _TokenSet, now: int) -> TokenSetRecord:
        available = sum(1 for s, exp in self._tokens.values() if s == name and exp > now)
        return TokenSetRecord(name, ts.total, available, ts.created_at, ts.expires_at)

    async def create_token_set(
        self, name: str, token_hashes: Sequence[bytes], *, created_at: int, expires_at: int
    ) -> TokenSetRecord:
        """Store a token set; ``Conflict`` if the name or a token hash exists."""
        require_open(self._state)
        if name in self._token_sets:
            raise Conflict(f"token set {name!r} exists")
        hashes = list(token_hashes)
        if len(set(hashes)) != len(hashes) or any(h in self._tokens for h in hashes):
            raise Conflict("duplicate token hash")
        ts = self._token_sets[name] = _TokenSet(len(hashes), created_at, expires_at)
        for token_hash in hashes:
            self._tokens[token_hash] = (name, expires_at)
        return self._token_set_record(name, ts, created_at)

    async def get_token_set(self, name: str, *, now: int) -> TokenSetRecord | None:
        """The set with its count of available tokens at ``now``, or ``None``."""
        require_open(self._state)
        ts = self._token_sets.get(name)
        return None if ts is None else self._token_set_record(name, ts, now)

    async def list_token_sets(
        self, *, now: int, page: int = 1, per_page: int = 100
    ) -> Page[TokenSetRecord]:
        """Token sets newest first (ties by name)."""
        require_open(self._state)
        check_page(page, per_page)
        order = sorted(self._token_sets.items(), key=lambda kv: (-kv[1].created_at, kv[0]))
        return _page([self._token_set_record(n, ts, now) for n, ts in order], page, per_page)

    async def delete_token_set(self, name: str) -> None:
        """Delete a set and its unspent tokens; raises ``NotFound``."""
        require_open(self._state)
        if self._token_sets.pop(name, None) is None:
            raise NotFound(f"token set {name!r} not found")
        self._tokens = {h: v for h, v in self._tokens.items() if v[0] != name}

    async def purge_expired_tokens(self, *, now: int) -> int:
        """Delete tokens with ``expires_at <= now``; returns how many."""
        require_open(self._state)
        before = len(self._tokens)
        self._tokens = {h: v for h, v in self._tokens.items() if v[1] > now}
        return before - len(self._tokens)

    async def register_target(
        self, token_hash: bytes, target: TargetRecord, *, now: int
    ) -> TargetRecord:
        """Spend the token and create the target atomically (see :class:`Storage`)."""
        require_open(self._state)
        entry = self._tokens.get(token_hash)
        if entry is None or entry[1] <= now:
            raise TokenRejected("registration token unknown, expired or spent")
        if target.id in self._targets:
            raise Conflict(f"target {target.id!r} exists")
        if any(t.curve_key == target.curve_key for t in self._targets.values()):
            raise Conflict("another target has this CURVE key")
        del self._tokens[token_hash]
        stored = dataclasses.replace(
            target,
            token_set=entry[0],
            tags=unique_tags(target.tags),
            health=copy.deepcopy(target.health),
        )
        self._targets[target.id] = stored
        return _fresh_target(stored)

    # -- tasks ---------------------------------------------------------------------------------
    async def add_task(self, task: TaskRecord, targets: Sequence[TaskTargetRecord]) -> None:
        """Store a task and its per-target rows; ``Conflict`` if the id exists."""
        require_open(self._state)
        keys = [(task.id, row.target_id) for row in targets]
        if task.id in self._tasks or len(set(keys)) != len(keys):
            raise Conflict(f"task {task.id!r} exists or has duplicate targets")
        self._tasks[task.id] = _fresh_task(task)
        self._task_words[task.id] = frozenset(fts_words(task.description))
        for row in targets:
            self._task_targets[(task.id, row.target_id)] = dataclasses.replace(row, task_id=task.id)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        """The task, or ``None``."""
        require_open(self._state)
        task = self._tasks.get(task_id)
        return None if task is None else _fresh_task(task)

    async def list_tasks(
        self,
        *,
        search: str | None = None,
        sort_order: SortOrder = "asc",
        page: int = 1,
        per_page: int = 100,
    ) -> Page[TaskRecord]:
        """Tasks by ``(created_at, id)``, filtered by a full-text ``search``."""
        require_open(self._state)
        check_page(page, per_page)
        words = set(fts_words(search or ""))
        found = sorted(
            (t for t in self._tasks.values() if words <= self._task_words[t.id]),
            key=lambda t: (t.created_at, t.id),
            reverse=sort_order == "desc",
        )
        return _page([_fresh_task(t) for t in found], page, per_page)

    async def delete_task(self, task_id: str) -> None:
        """Delete the task, its per-target rows and its logs; raises ``NotFound``."""
        require_open(self._state)
        if self._tasks.pop(task_id, None) is None:
            raise NotFound(f"task {task_id!r} not found")
        del self._task_words[task_id]
        self._task_targets = {k: v for k, v in self._task_targets.items() if k[0] != task_id}
        self._logs.delete_task(task_id)
        self._uploads.delete_task(task_id)
        self._artifacts.delete_task(task_id)

    async def mark_task_stopped(self, task_id: str, at: int) -> None:
        """Set ``stopped_at``; raises ``NotFound``."""
        require_open(self._state)
        task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        self._tasks[task_id] = dataclasses.replace(task, stopped_at=at)

    async def task_targets(self, task_id: str) -> list[TaskTargetRecord]:
        """Rows of a task by (role, target_id): the build host first."""
        require_open(self._state)
        rows = (r for (t, _), r in self._task_targets.items() if t == task_id)
        return sorted(rows, key=lambda r: (r.role, r.target_id))

    async def task_state_counts(self, task_ids: Sequence[str]) -> dict[str, list[StateCount]]:
        """Rows per (task, role, state) with the smallest target id."""
        require_open(self._state)
        wanted = set(task_ids)
        groups: dict[tuple[str, str, str], list[str]] = {}
        for (task_id, target_id), r in self._task_targets.items():
            if task_id in wanted:
                groups.setdefault((task_id, r.role, r.state), []).append(target_id)
        found: dict[str, list[StateCount]] = {}
        for (task_id, role, state), ids in groups.items():
            found.setdefault(task_id, []).append(StateCount(role, state, len(ids), min(ids)))
        for counts in found.values():
            counts.sort(key=lambda c: (c.role, c.first_target))
        return found

    async def target_tasks(
        self, target_id: str, *, states: Sequence[str] | None = None
    ) -> list[TaskTargetRecord]:
        """Rows of a target (optionally only in ``states``), newest task first."""
        require_open(self._state)
        rows = [
            r
            for (_, tid), r in self._task_targets.items()
            if tid == target_id and (states is None or r.state in states)
        ]
        rows.sort(key=lambda r: (self._tasks[r.task_id].created_at, r.task_id), reverse=True)
        return rows

    async def recent_task_rows(
        self, target_ids: Sequence[str], *, per_target: int
    ) -> dict[str, list[TaskTargetRecord]]:
        """The ``per_target`` newest rows of each target, newest first."""
        found: dict[str, list[TaskTargetRecord]] = {}
        for target_id in dict.fromkeys(target_ids):
            rows = (await self.target_tasks(target_id))[: max(per_target, 0)]
            if rows:
                found[target_id] = rows
        return found

    async def get_task_target(self, task_id: str, target_id: str) -> TaskTargetRecord | None:
        """The row of ``target_id`` for ``task_id``, or ``None``."""
        require_open(self._state)
        return self._task_targets.get((task_id, target_id))

    async def count_task_targets_by_state(self) -> dict[str, int]:
        """Number of rows per state."""
        require_open(self._state)
        return dict(collections.Counter(r.state for r in self._task_targets.values()))

    async def count_tasks_by_states(self) -> dict[frozenset[str], int]:
        """Number of tasks per set of distinct row states (no rows: the empty set)."""
        require_open(self._state)
        states: dict[str, set[str]] = {task_id: set() for task_id in self._tasks}
        for (task_id, _), row in self._task_targets.items():
            states[task_id].add(row.state)
        return dict(collections.Counter(frozenset(s) for s in states.values()))

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
        """Set one row's state, compare-and-set when ``expected`` is given."""
        require_open(self._state)
        row = self._task_targets.get((task_id, target_id))
        if row is None or (expected is not None and row.state not in expected):
            return False
        self._task_targets[(task_id, target_id)] = dataclasses.replace(
            row, state=state, updated_at=updated_at, reason=reason
        )
        return True

    async def retry_task_target(
        self, task_id: str, target_id: str, *, updated_at: int, expected: Sequence[str]
    ) -> TaskTargetRecord | None:
        """Back to ``pending`` with the next attempt, if the state is one of ``expected``."""
        require_open(self._state)
        row = self._task_targets.get((task_id, target_id))
        if row is None or row.state not in expected:
            return None
        new = dataclasses.replace(
            row, state="pending", updated_at=updated_at, reason="", attempt=row.attempt + 1
        )
        self._task_targets[(task_id, target_id)] = new
        return new

    async def commit_batch(self, batch: WriteBatch) -> BatchResult:
        """Every write of ``batch`` at once (no other coroutine runs in between)."""
        require_open(self._state)
        changed = []
        for write in batch.states:
            changed.append(
                await self.set_task_target_state(
                    write.task_id,
                    write.target_id,
                    state=write.state,
                    updated_at=write.updated_at,
                    reason=write.reason,
                    expected=write.expected,
                )
            )
        stored = [self._logs.add(group) for group in batch.logs]
        for contact in batch.contacts:
            await self.touch_target(contact.target_id, seen_at=contact.seen_at,
                                    health=contact.health)  # fmt: skip
            if contact.sample is not None:
                await self.add_health_sample(contact.sample)
        return BatchResult(states=changed, logs=stored)

    async def expire_pending(
        self, *, now: int, states: Sequence[str], new_state: str
    ) -> list[TaskTargetRecord]:
        """Move rows in ``states`` of tasks expired at ``now`` to ``new_state``."""
        require_open(self._state)
        changed = []
        for row in self._task_targets.values():
            if row.state in states and self._tasks[row.task_id].expires_at <= now:
                changed.append(dataclasses.replace(row, state=new_state, updated_at=now))
        for row in changed:
            self._task_targets[(row.task_id, row.target_id)] = row
        return sorted(changed, key=lambda r: (r.task_id, r.target_id))

    # -- logs ----------------------------------------------------------------------------------
    async def add_logs(self, logs: Sequence[LogRecord]) -> int:
        """Store lines not seen before (by ``(target, seq)``); returns how many were stored."""
        require_open(self._state)
        return self._logs.add(logs)

    async def query_logs(self, query: LogQuery) -> Page[LogRecord]:
        """Logs matching ``query``, sorted by its field then id."""
        require_open(self._state)
        check_page(query.page, query.per_page)
        return _page(self._logs.query(query), query.page, query.per_page)

    async def purge_logs(
        self, *, older_than: int | None = None, keep_rows: int | None = None
    ) -> int:
        """Retention by age and/or row count; returns how many lines were deleted."""
        require_open(self._state)
        return self._logs.purge(older_than, keep_rows)

    async def count_logs(self) -> int:
        """Number of stored log lines."""
        require_open(self._state)
        return len(self._logs)

    async def max_log_seq(self, target_id: str) -> int:
        """The highest stored ``seq`` of the target, 0 if none."""
        require_open(self._state)
        return self._logs.max_seq(target_id)

    # -- blob references -----------------------------------------------------------------------
    async def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` a task, upload, artifact or live reuse-task manifest names."""
        require_open(self._state)
        wanted = set(digests)
        found = {d for t in self._tasks.values() if (d := t.source_digest) in wanted and d}
        for task_id in self._tasks:
            found.update(u.sha256 for u in self._uploads.list(task_id) if u.sha256 in wanted)
        found.update(sha for _, sha in self._artifacts.artifacts if sha in wanted)
        for (task_id, _), signature in self._task_signatures.items():
            task = self._tasks.get(task_id)
            if task is not None and task.source_digest is None and task.build_host is None:
                found.update(d for d in wanted if d.encode() in signature.manifest)
        return found

    # -- API keys ------------------------------------------------------------------------------
    async def add_api_key(self, key: ApiKeyRecord) -> None:
        """Store a key; ``Conflict`` if the id or the name exists."""
        require_open(self._state)
        if key.id in self._api_keys or any(k.name == key.name for k in self._api_keys.values()):
            raise Conflict(f"API key {key.id!r} / {key.name!r} exists")
        self._api_keys[key.id] = key

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, or ``None``."""
        require_open(self._state)
        return self._api_keys.get(key_id)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """All keys sorted by name."""
        require_open(self._state)
        return sorted(self._api_keys.values(), key=lambda k: k.name)

    async def delete_api_key(self, key_id: str) -> None:
        """Delete a key; raises ``NotFound``."""
        require_open(self._state)
        if self._api_keys.pop(key_id, None) is None:
            raise NotFound(f"API key {key_id!r} not found")

    async def touch_api_key(self, key_id: str, at: int) -> None:
        """Record the last use of a key; unknown ids are ignored."""
        require_open(self._state)
        key = self._api_keys.get(key_id)
        if key is not None:
            self._api_keys[key_id] = dataclasses.replace(key, last_used_at=at)
