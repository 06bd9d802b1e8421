"""Two-stage delivery on the manager's side (docs/protocol.md §6.2 step 4, §6.3, §6.5).

* :meth:`Delivery.announce_pending` announces every task of a target still ``pending`` or
  ``announced`` (at every ``hello``); :meth:`Delivery.announce` one task (at creation, after
  a build delivered). An announcement handed to the link moves ``pending`` to ``announced``
  through the state choke point. Expired tasks are left to the expiry job; tasks stopped
  before delivery are marked ``stopped``; deploy targets of a build wait for its artifacts;
  deploy targets of a staged rollout wait for their group (the ``gate``).
* :meth:`Delivery.fetch` answers ``fetch_task`` with the stored signed manifest, and
  :meth:`Delivery.chunk` answers ``chunk_request`` with one chunk (of the size the manifest
  signed) read from the blob on demand -- both only while the (task, target) pair is
  ``accepted``, ``transferring`` or ``building``.

What a live deployment needs is kept in memory (docs/adr/0011-live-deployments-and-group-commit.md):
task records for ``grant_ttl_ms``, checked packages (:class:`~.packages.Packages`), the
per-target rows (:class:`~swarmdeploy.manager.services.task_states.TaskStates`) and each
pair's grant. A changed row drops the pair's grant at once (the link registers
:meth:`Delivery.invalidate` as a change listener); a stop, a deletion or a revoked operator
key drops everything of the task (:meth:`Delivery.forget_task`, :meth:`Delivery.forget_all`).

Every package is checked first (:class:`~.packages.Packages`). A task the manager refuses to
send -- changed after signing, signed by a revoked key, a damaged artifact -- ends on that
target with the refusal as reason: ``declined`` before the agent accepted it,
``install_failed`` / ``build_failed`` after; the agent gets an ``error`` with the code.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.link.packages import (
    DeliveryRefused,
    Package,
    Packages,
    Role,
    announcement,
)
from swarmdeploy.manager.services.blob_cipher import BlobDamaged
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol.errors import MessageError, TransitionError
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Chunk, ChunkRequest, Error, FetchTask, Task
from swarmdeploy.protocol.states import TargetEvent, TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TaskRecord, TaskTargetRecord
from swarmdeploy.transport.base import ManagerTransport

log = logging.getLogger(__name__)

#: States in which a target may receive the payload of a task (§6.3).
PAYLOAD_STATES = frozenset({TargetState.ACCEPTED, TargetState.TRANSFERRING, TargetState.BUILDING})
_UNDELIVERED = (TargetState.PENDING.value, TargetState.ANNOUNCED.value)
_TASKS_MAX = 4096
#: Chunk bytes kept in memory for the next targets of a deployment (:class:`ChunkCache`).
CHUNK_CACHE_BYTES = 16 << 20
#: Whether a row may be announced now (a staged rollout's current group, ``services.rollouts``).
Gate = Callable[[TaskRecord, TaskTargetRecord], Awaitable[bool]]


class ChunkCache:
    """The newest chunks read from blobs, up to ``max_bytes``: a bulk deployment serves the
    same chunks to every target, so each is read from its blob (and decrypted, when blobs
    are encrypted at rest) once instead of once per target. Blobs are content-addressed and
    never change, so a kept chunk is never stale."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._data: collections.OrderedDict[tuple[str, int, int], bytes] = collections.OrderedDict()

    def get(self, sha256: str, offset: int, length: int) -> bytes | None:
        """The kept bytes of that range, or ``None``."""
        key = (sha256, offset, length)
        data = self._data.get(key)
        if data is not None:
            self._data.move_to_end(key)
        return data

    def put(self, sha256: str, offset: int, data: bytes) -> None:
        """Keep ``data`` read at ``offset`` of blob ``sha256`` (the oldest go beyond the
        limit; a chunk larger than the limit is not kept)."""
        if len(data) > self._max:
            return
        key = (sha256, offset, len(data))
        if key in self._data:
            return
        self._data[key] = data
        self._bytes += len(data)
        while self._bytes > self._max:
            _, old = self._data.popitem(last=False)
            self._bytes -= len(old)


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """A (task, target) pair allowed to receive the payload, as of ``checked_ms``."""

    task: TaskRecord
    role: Role
    package: Package | None
    checked_ms: int


def _error(code: str, message: str, msg: FetchTask | ChunkRequest) -> Error:
    if isinstance(msg, FetchTask):
        return Error(code=code, message=message, in_reply_to="fetch_task", task_id=msg.task_id)
    return Error(
        code=code,
        message=message,
        in_reply_to="chunk_request",
        task_id=msg.task_id,
        sha256=msg.sha256,
        index=msg.index,
    )


class Delivery:
    """Announcements, manifests and chunks for one manager (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        states: TaskStates,
        packages: Packages,
        blobs: BlobStore,
        transport: ManagerTransport,
        clock: Clock,
        grant_ttl_ms: int,
        gate: Gate | None = None,
    ) -> None:
        self._storage = storage
        self._gate = gate
        self._states = states
        self._packages = packages
        self._blobs = blobs
        self._transport = transport
        self._clock = clock
        self._grant_ttl_ms = grant_ttl_ms
        self._grants: dict[tuple[str, str], Grant] = {}
        self._tasks: dict[str, tuple[TaskRecord, int]] = {}
        self._chunks = ChunkCache(CHUNK_CACHE_BYTES)

    async def _task(self, task_id: str) -> TaskRecord | None:
        """The task record, read from storage at most once per ``grant_ttl_ms``."""
        now = self._clock()
        cached = self._tasks.get(task_id)
        if cached is not None and now - cached[1] < self._grant_ttl_ms:
            return cached[0]
        task = await self._storage.get_task(task_id)
        if task is None:
            self._tasks.pop(task_id, None)
            return None
        if len(self._tasks) >= _TASKS_MAX:
            self._tasks.clear()
        self._tasks[task_id] = (task, now)
        return task

    def forget_task(self, task_id: str) -> None:
        """The task was stopped or deleted: read it again and check every grant again."""
        self._tasks.pop(task_id, None)
        for key in [k for k in self._grants if k[0] == task_id]:
            del self._grants[key]
        self._packages.forget(task_id)

    def forget_all(self) -> None:
        """An operator key was revoked: check every task and package again."""
        self._tasks.clear()
        self._grants.clear()
        self._packages.forget()

    # -- first stage ---------------------------------------------------------------------------
    async def announce_pending(self, target_id: str) -> int:
        """Announce every undelivered task of ``target_id`` in the order of their signed
        sequence numbers (agents refuse a task older than one they accepted, so the order
        of creation is not enough: a build's deploy manifest is signed when the build
        delivers); returns how many were sent."""
        rows = await self._storage.target_tasks(target_id, states=_UNDELIVERED)
        self._states.remember(rows)
        ready = []
        for row in rows:
            prepared = await self._prepare(row)
            if prepared is not None:
                ready.append((row, *prepared))
        ready.sort(key=lambda item: item[2].manifest.sequence)
        sent = 0
        for row, task, package in ready:
            sent += await self._send(row, task, package)
        return sent

    async def announce(self, task_id: str, target_id: str) -> bool:
        """Announce one task to ``target_id`` if its row is still undelivered."""
        try:
            row = await self._states.row(task_id, target_id)
        except NotFoundError:
            return False
        if row.state not in _UNDELIVERED:
            return False
        prepared = await self._prepare(row)
        return prepared is not None and bool(await self._send(row, *prepared))

    async def _prepare(self, row: TaskTargetRecord) -> tuple[TaskRecord, Package] | None:
        """The task and its checked package, or ``None`` if there is nothing to announce
        (deleted, expired, stopped, refused or not signed yet)."""
        task = await self._task(row.task_id)
        if task is None or task.expires_at <= self._clock():
            return None  # deleted, or expired: the expiry job marks the row
        if task.stopped_at is not None:
            await self._apply(row, TargetEvent.STOP, "stopped before delivery")
            return None
        try:
            package = await self._packages.package(task, row.role)
        except DeliveryRefused as exc:
            await self._refuse(row, exc)
            return None
        if package is None:
            return None  # a build has not delivered its artifacts yet
        if self._gate is not None and not await self._gate(task, row):
            return None  # a later group of a staged rollout, or a paused or halted one
        return task, package

    async def _send(self, row: TaskTargetRecord, task: TaskRecord, package: Package) -> int:
        if not await self._transport.send(
            row.target_id, announcement(task, package, attempt=row.attempt)
        ):
            return 0
        if row.state == TargetState.PENDING.value:
            await self._apply(row, TargetEvent.ANNOUNCE)
        return 1

    async def _apply(self, row: TaskTargetRecord, event: TargetEvent, reason: str = "") -> None:
        try:
            await self._states.apply(row.task_id, row.target_id, event, reason=reason)
        except (NotFoundError, TransitionError) as exc:
            log.debug("%s of task %s on %s skipped: %s", event, row.task_id, row.target_id, exc)

    async def _refuse(self, row: TaskTargetRecord, exc: DeliveryRefused) -> None:
        """End the pair with the refusal as reason (see the module docstring)."""
        reason = f"refused by the manager ({exc.code}): {exc.message}"
        if row.state in _UNDELIVERED:
            reported = TargetState.DECLINED
        else:
            reported = (
                TargetState.BUILD_FAILED if row.role == "build" else TargetState.INSTALL_FAILED
            )
        try:
            await self._states.report(row.task_id, row.target_id, reported, reason=reason)
        except NotFoundError:
            return
        self.invalidate(row.task_id, row.target_id)

    # -- second stage --------------------------------------------------------------------------
    async def _grant(self, task_id: str, target_id: str) -> Grant | str | DeliveryRefused:
        """The pair's grant, the error code refusing it, or the package's refusal."""
        now = self._clock()
        grant = self._grants.get((task_id, target_id))
        if grant is not None and now - grant.checked_ms < self._grant_ttl_ms:
            return grant
        self._grants.pop((task_id, target_id), None)
        task = await self._task(task_id)
        if task is None:
            return "unknown_task"
        try:
            row = await self._states.row(task_id, target_id)
        except NotFoundError:
            return "not_authorized"
        if TargetState(row.state) not in PAYLOAD_STATES or task.stopped_at is not None:
            return "not_authorized"
        try:
            package = await self._packages.package(task, row.role)
        except DeliveryRefused as exc:
            await self._refuse(row, exc)
            return exc
        grant = Grant(task, row.role, package, now)
        if len(self._grants) >= 10_000:
            self._grants.clear()
        self._grants[(task_id, target_id)] = grant
        return grant

    def invalidate(self, task_id: str, target_id: str) -> None:
        """The pair's state changed: check it again on the next request."""
        self._grants.pop((task_id, target_id), None)

    async def fetch(self, target_id: str, msg: FetchTask) -> Task | Error:
        """The manifest of an accepted task, or an error (§6.3 step 3)."""
        grant = await self._grant(msg.task_id, target_id)
        if not isinstance(grant, Grant):
            return self._denied(grant, msg)
        if grant.package is None:
            self.invalidate(msg.task_id, target_id)
            return _error("busy", "the task's artifacts are not available yet", msg)
        return grant.package.message()

    @staticmethod
    def _denied(why: str | DeliveryRefused, msg: FetchTask | ChunkRequest) -> Error:
        if isinstance(why, DeliveryRefused):
            return _error(why.code, why.message, msg)
        return _error(why, f"task {msg.task_id} is not yours to fetch now", msg)

    async def artifact(self, target_id: str, task_id: str, sha256: str) -> ArtifactInfo | Error:
        """The signed size and chunking of an artifact the pair may fetch now (the HTTP
        link's ranged downloads, docs/protocol.md §10), or an error."""
        msg = ChunkRequest(task_id=task_id, sha256=sha256, index=0)
        grant = await self._grant(task_id, target_id)
        if not isinstance(grant, Grant):
            return self._denied(grant, msg)
        artifacts = grant.package.artifacts if grant.package is not None else []
        info = next((a for a in artifacts if a.sha256 == sha256), None)
        if info is None:
            return _error("unknown_artifact", f"task {task_id} has no such artifact", msg)
        return info

    async def chunk(self, target_id: str, msg: ChunkRequest) -> Chunk | Error:
        """One chunk read from the blob file on demand (§6.5), or an error."""
        grant = await self._grant(msg.task_id, target_id)
        if not isinstance(grant, Grant):
            return self._denied(grant, msg)
        artifacts = grant.package.artifacts if grant.package is not None else []
        info = next((a for a in artifacts if a.sha256 == msg.sha256), None)
        if info is None:
            return _error("unknown_artifact", f"task {msg.task_id} has no such artifact", msg)
        try:
            offset, length = info.chunk_span(msg.index)
        except MessageError as exc:
            return _error(exc.code, str(exc), msg)
        try:
            data = self._chunks.get(msg.sha256, offset, length)
            if data is None:
                data = await self._blobs.read_range(msg.sha256, offset, length)
                if len(data) == length:
                    self._chunks.put(msg.sha256, offset, data)
        except NotFoundError:
            log.error(
                "artifact %s of task %s is missing from the blob store", msg.sha256, msg.task_id
            )
            return _error("unknown_artifact", "the artifact is missing on the manager", msg)
        except BlobDamaged as exc:  # encrypted at rest and failed authentication: never served
            log.error("artifact %s of task %s: %s", msg.sha256, msg.task_id, exc)
            return _error("unknown_artifact", "the artifact is damaged on the manager", msg)
        if len(data) != length:
            log.error("artifact %s is shorter than recorded", msg.sha256)
            return _error("unknown_artifact", "the artifact is damaged on the manager", msg)
        return Chunk(task_id=msg.task_id, sha256=msg.sha256, index=msg.index, data=data)
