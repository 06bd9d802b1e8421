"""Two-stage delivery on the manager's side (docs/protocol.md §6.2 step 4, §6.3, §6.5).

* :meth:`Delivery.announce_pending` announces every task of a target still ``pending`` or
  ``announced`` (at every ``hello``); :meth:`Delivery.announce` one task (at creation, after
  a build delivered). An announcement handed to the link moves ``pending`` to ``announced``
  through the state choke point. Expired tasks are left to the expiry job; tasks stopped
  before delivery are marked ``stopped``; deploy targets of a build wait for its artifacts.
* :meth:`Delivery.fetch` answers ``fetch_task`` with the manifest, and :meth:`Delivery.chunk`
  answers ``chunk_request`` with one chunk read from the blob on demand -- both only while
  the (task, target) pair is ``accepted``, ``transferring`` or ``building``.
"""

from __future__ import annotations

import dataclasses
import logging

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.link.manifest import ArtifactCatalog, Role, announcement, build_manifest
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.protocol.errors import MessageError, TransitionError
from swarmdeploy.protocol.manifest import encode_manifest
from swarmdeploy.protocol.messages import Chunk, ChunkRequest, Error, FetchTask, Task
from swarmdeploy.protocol.states import TargetEvent, TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TaskRecord, TaskTargetRecord
from swarmdeploy.transport.base import ManagerTransport

log = logging.getLogger(__name__)

#: States in which a target may receive the payload of a task (§6.3).
PAYLOAD_STATES = frozenset({TargetState.ACCEPTED, TargetState.TRANSFERRING, TargetState.BUILDING})
_UNDELIVERED = (TargetState.PENDING.value, TargetState.ANNOUNCED.value)


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """A (task, target) pair allowed to receive the payload, as of ``checked_ms``."""

    task: TaskRecord
    role: Role
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
        catalog: ArtifactCatalog,
        blobs: BlobStore,
        transport: ManagerTransport,
        clock: Clock,
        grant_ttl_ms: int,
    ) -> None:
        self._storage = storage
        self._states = states
        self._catalog = catalog
        self._blobs = blobs
        self._transport = transport
        self._clock = clock
        self._grant_ttl_ms = grant_ttl_ms
        self._grants: dict[tuple[str, str], Grant] = {}

    # -- first stage ---------------------------------------------------------------------------
    async def announce_pending(self, target_id: str) -> int:
        """Announce every undelivered task of ``target_id``; returns how many were sent."""
        rows = await self._storage.target_tasks(target_id, states=_UNDELIVERED)
        sent = 0
        for row in reversed(rows):  # oldest task first
            sent += await self._announce_row(row)
        return sent

    async def announce(self, task_id: str, target_id: str) -> bool:
        """Announce one task to ``target_id`` if its row is still undelivered."""
        try:
            row = await self._states.row(task_id, target_id)
        except NotFoundError:
            return False
        if row.state not in _UNDELIVERED:
            return False
        return bool(await self._announce_row(row))

    async def _announce_row(self, row: TaskTargetRecord) -> int:
        task = await self._storage.get_task(row.task_id)
        if task is None or task.expires_at <= self._clock():
            return 0  # deleted, or expired: the expiry job marks the row
        if task.stopped_at is not None:
            await self._apply(row, TargetEvent.STOP, "stopped before delivery")
            return 0
        artifacts = await self._catalog.artifacts(task, row.role)
        if artifacts is None:
            return 0  # a build has not delivered its artifacts yet
        if not await self._transport.send(row.target_id, announcement(task, row.role, artifacts)):
            return 0
        if row.state == TargetState.PENDING.value:
            await self._apply(row, TargetEvent.ANNOUNCE)
        return 1

    async def _apply(self, row: TaskTargetRecord, event: TargetEvent, reason: str = "") -> None:
        try:
            await self._states.apply(row.task_id, row.target_id, event, reason=reason)
        except (NotFoundError, TransitionError) as exc:
            log.debug("%s of task %s on %s skipped: %s", event, row.task_id, row.target_id, exc)

    # -- second stage --------------------------------------------------------------------------
    async def _grant(self, task_id: str, target_id: str) -> Grant | str:
        """The pair's grant, or the error code refusing it."""
        now = self._clock()
        grant = self._grants.get((task_id, target_id))
        if grant is not None and now - grant.checked_ms < self._grant_ttl_ms:
            return grant
        self._grants.pop((task_id, target_id), None)
        task = await self._storage.get_task(task_id)
        if task is None:
            return "unknown_task"
        try:
            row = await self._states.row(task_id, target_id)
        except NotFoundError:
            return "not_authorized"
        if TargetState(row.state) not in PAYLOAD_STATES or task.stopped_at is not None:
            return "not_authorized"
        grant = Grant(task, row.role, now)
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
        if isinstance(grant, str):
            return _error(grant, f"task {msg.task_id} is not yours to fetch now", msg)
        artifacts = await self._catalog.artifacts(grant.task, grant.role)
        if artifacts is None:
            return _error("busy", "the task's artifacts are not available yet", msg)
        manifest = encode_manifest(build_manifest(grant.task, grant.role, artifacts))
        # Signature and certificate stay empty until task signing lands (CRD-72, the signing
        # issue): agents accept unsigned manifests for now; the fields are already on the wire.
        return Task(task_id=msg.task_id, manifest=manifest, signature=b"", certificate=b"")

    async def chunk(self, target_id: str, msg: ChunkRequest) -> Chunk | Error:
        """One chunk read from the blob file on demand (§6.5), or an error."""
        grant = await self._grant(msg.task_id, target_id)
        if isinstance(grant, str):
            return _error(grant, f"task {msg.task_id} is not yours to fetch now", msg)
        artifacts = await self._catalog.artifacts(grant.task, grant.role) or []
        info = next((a for a in artifacts if a.sha256 == msg.sha256), None)
        if info is None:
            return _error("unknown_artifact", f"task {msg.task_id} has no such artifact", msg)
        try:
            offset, length = info.chunk_span(msg.index)
        except MessageError as exc:
            return _error(exc.code, str(exc), msg)
        try:
            data = await self._blobs.read_range(msg.sha256, offset, length)
        except NotFoundError:
            log.error(
                "artifact %s of task %s is missing from the blob store", msg.sha256, msg.task_id
            )
            return _error("unknown_artifact", "the artifact is missing on the manager", msg)
        if len(data) != length:
            log.error("artifact %s is shorter than recorded", msg.sha256)
            return _error("unknown_artifact", "the artifact is damaged on the manager", msg)
        return Chunk(task_id=msg.task_id, sha256=msg.sha256, index=msg.index, data=data)
