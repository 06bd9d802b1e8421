"""Requests to agents and upload progress of the in-memory storage (no awaits: every call is
atomic with respect to other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

from swarmdeploy.storage.common import check_final
from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import (
    FINISHED_REQUEST_STATES,
    OPEN_REQUEST_STATES,
    RequestRecord,
    RequestState,
    TargetRecord,
    TaskRecord,
    UploadRecord,
)


def _fresh(request: RequestRecord) -> RequestRecord:
    return dataclasses.replace(request, payload=copy.deepcopy(request.payload))


class RequestStore:
    """Requests keyed by ``(target_id, id)``; a counter keeps the order they were stored."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[int, RequestRecord]] = {}
        self._next_seq = 1

    def _open(self, target_id: str) -> list[tuple[int, RequestRecord]]:
        found = [
            (seq, r)
            for (tid, _), (seq, r) in self._rows.items()
            if tid == target_id and r.state in OPEN_REQUEST_STATES
        ]
        return sorted(found, key=lambda item: item[0])

    def add(
        self,
        request: RequestRecord,
        max_open: int | None,
        counted_kinds: Sequence[str] | None,
        supersede: bool,
    ) -> bool:
        """See ``Storage.add_request`` (the caller checked that the target exists)."""
        key = (request.target_id, request.id)
        if supersede:
            for _, old in self._open(request.target_id):
                if old.kind == request.kind:
                    del self._rows[(old.target_id, old.id)]
            self._rows.pop(key, None)
        if key in self._rows:
            raise Conflict(f"request {request.id!r} of {request.target_id!r} exists")
        if max_open is not None:
            counted = [
                r
                for _, r in self._open(request.target_id)
                if counted_kinds is None or r.kind in counted_kinds
            ]
            if len(counted) >= max_open:
                return False
        self._rows[key] = (self._next_seq, _fresh(request))
        self._next_seq += 1
        return True

    def get(self, target_id: str, request_id: str) -> RequestRecord | None:
        """The request or ``None``."""
        found = self._rows.get((target_id, request_id))
        return None if found is None else _fresh(found[1])

    def open(self, target_id: str) -> list[RequestRecord]:
        """Open requests of the target in storing order."""
        return [_fresh(r) for _, r in self._open(target_id)]

    def _set(self, request: RequestRecord, **changes: Any) -> RequestRecord:
        key = (request.target_id, request.id)
        seq, _ = self._rows[key]
        changed = dataclasses.replace(request, **changes)
        self._rows[key] = (seq, changed)
        return _fresh(changed)

    def mark_sent(self, target_id: str, request_ids: Sequence[str]) -> int:
        """``pending`` -> ``sent`` for these ids; returns how many changed."""
        count = 0
        for request_id in set(request_ids):
            found = self._rows.get((target_id, request_id))
            if found is not None and found[1].state == "pending":
                self._set(found[1], state="sent")
                count += 1
        return count

    def finish(
        self, target_id: str, request_id: str, state: RequestState, at: int, message: str
    ) -> RequestRecord | None:
        """Open -> ``state``; the finished request or ``None``."""
        check_final(state)
        found = self._rows.get((target_id, request_id))
        if found is None or found[1].state not in OPEN_REQUEST_STATES:
            return None
        return self._set(found[1], state=state, acked_at=at, message=message)

    def expire(self, target_id: str, now: int) -> list[RequestRecord]:
        """Expire the target's open requests due at ``now``."""
        return [
            self._set(r, state="expired", acked_at=now, message="expired")
            for _, r in self._open(target_id)
            if r.expires_at is not None and r.expires_at <= now
        ]

    def targets_with_expired(self, now: int) -> list[str]:
        """Targets with open requests due at ``now``."""
        due = {
            r.target_id
            for _, r in self._rows.values()
            if r.state in OPEN_REQUEST_STATES and r.expires_at is not None and r.expires_at <= now
        }
        return sorted(due)

    def delete_target(self, target_id: str) -> int:
        """Delete every request of the target."""
        keys = [k for k in self._rows if k[0] == target_id]
        for key in keys:
            del self._rows[key]
        return len(keys)

    def purge(self, older_than: int) -> int:
        """Delete finished requests with ``acked_at < older_than``."""
        keys = [
            k
            for k, (_, r) in self._rows.items()
            if r.state in FINISHED_REQUEST_STATES and (r.acked_at or 0) < older_than
        ]
        for key in keys:
            del self._rows[key]
        return len(keys)


class UploadStore:
    """Upload records keyed by ``(task_id, sha256)``."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], UploadRecord] = {}

    def start(self, upload: UploadRecord) -> None:
        """Store or replace the record (the caller checked that the task exists)."""
        self._rows[(upload.task_id, upload.sha256)] = upload

    def get(self, task_id: str, sha256: str) -> UploadRecord | None:
        """The record or ``None``."""
        return self._rows.get((task_id, sha256))

    def list(self, task_id: str) -> list[UploadRecord]:
        """Records of the task by ``(name, sha256)``."""
        found = [u for (tid, _), u in self._rows.items() if tid == task_id]
        return sorted(found, key=lambda u: (u.name, u.sha256))

    def advance(
        self, task_id: str, sha256: str, expected_next: int, next_index: int, complete: bool
    ) -> bool:
        """Compare-and-set of ``next_index`` (and ``complete``)."""
        upload = self._rows.get((task_id, sha256))
        if upload is None or upload.complete or upload.next_index != expected_next:
            return False
        self._rows[(task_id, sha256)] = dataclasses.replace(
            upload, next_index=next_index, complete=complete
        )
        return True

    def delete(self, task_id: str, sha256: str) -> bool:
        """Delete one record."""
        return self._rows.pop((task_id, sha256), None) is not None

    def delete_task(self, task_id: str) -> None:
        """Delete every record of the task."""
        for key in [k for k in self._rows if k[0] == task_id]:
            del self._rows[key]


class MemoryLink:
    """The request and upload methods of ``MemoryStorage`` (a mixin: the storage owns the
    targets and tasks these refer to)."""

    _state: StorageState
    _targets: dict[str, TargetRecord]
    _tasks: dict[str, TaskRecord]
    _requests: RequestStore
    _uploads: UploadStore

    # -- requests ------------------------------------------------------------------------------
    async def add_request(
        self,
        request: RequestRecord,
        *,
        max_open: int | None = None,
        counted_kinds: Sequence[str] | None = None,
        supersede: bool = False,
    ) -> bool:
        """Store a request (bounded, optionally superseding); ``NotFound``, ``Conflict``."""
        require_open(self._state)
        if request.target_id not in self._targets:
            raise NotFound(f"target {request.target_id!r} not found")
        return self._requests.add(request, max_open, counted_kinds, supersede)

    async def get_request(self, target_id: str, request_id: str) -> RequestRecord | None:
        """The request, or ``None``."""
        require_open(self._state)
        return self._requests.get(target_id, request_id)

    async def open_requests(self, target_id: str) -> list[RequestRecord]:
        """Open requests of the target in storing order."""
        require_open(self._state)
        return self._requests.open(target_id)

    async def mark_requests_sent(self, target_id: str, request_ids: Sequence[str]) -> int:
        """``pending`` -> ``sent``; returns how many changed."""
        require_open(self._state)
        return self._requests.mark_sent(target_id, request_ids)

    async def finish_request(
        self,
        target_id: str,
        request_id: str,
        *,
        state: RequestState,
        at: int,
        message: str = "",
    ) -> RequestRecord | None:
        """Open -> final ``state`` (compare-and-set); the finished request or ``None``."""
        require_open(self._state)
        return self._requests.finish(target_id, request_id, state, at, message)

    async def expire_requests(self, target_id: str, *, now: int) -> list[RequestRecord]:
        """Expire the target's open requests due at ``now``."""
        require_open(self._state)
        return self._requests.expire(target_id, now)

    async def targets_with_expired_requests(self, *, now: int) -> list[str]:
        """Targets with open requests due at ``now``."""
        require_open(self._state)
        return self._requests.targets_with_expired(now)

    async def delete_requests(self, target_id: str) -> int:
        """Delete every request of the target."""
        require_open(self._state)
        return self._requests.delete_target(target_id)

    async def purge_requests(self, *, older_than: int) -> int:
        """Delete finished requests with ``acked_at < older_than``."""
        require_open(self._state)
        return self._requests.purge(older_than)

    # -- uploads -------------------------------------------------------------------------------
    async def start_upload(self, upload: UploadRecord) -> None:
        """Store or replace an upload record; ``NotFound`` for an unknown task."""
        require_open(self._state)
        if upload.task_id not in self._tasks:
            raise NotFound(f"task {upload.task_id!r} not found")
        self._uploads.start(upload)

    async def get_upload(self, task_id: str, sha256: str) -> UploadRecord | None:
        """The upload record, or ``None``."""
        require_open(self._state)
        return self._uploads.get(task_id, sha256)

    async def list_uploads(self, task_id: str) -> list[UploadRecord]:
        """The task's upload records by ``(name, sha256)``."""
        require_open(self._state)
        return self._uploads.list(task_id)

    async def advance_upload(
        self,
        task_id: str,
        sha256: str,
        *,
        expected_next: int,
        next_index: int,
        complete: bool = False,
    ) -> bool:
        """Compare-and-set of the upload's progress."""
        require_open(self._state)
        return self._uploads.advance(task_id, sha256, expected_next, next_index, complete)

    async def delete_upload(self, task_id: str, sha256: str) -> bool:
        """Delete one upload record."""
        require_open(self._state)
        return self._uploads.delete(task_id, sha256)
