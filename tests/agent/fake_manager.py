"""A tiny test-side manager that speaks the agent protocol over any ``ManagerTransport``.

It answers ``hello`` with ``welcome``, acknowledges state reports (persisting them in memory),
stores log lines exactly once by ``seq`` (docs/protocol.md §6.7), serves manifests and chunks
of the tasks a test adds, receives uploads, and records everything for assertions. Knobs let
a test refuse reports, withhold log acks or drop chunk answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import tarfile
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarmdeploy.protocol.manifest import ArtifactInfo, TaskManifest, encode_manifest
from swarmdeploy.protocol.messages import (
    Announce,
    Bye,
    Chunk,
    ChunkRequest,
    Error,
    FetchTask,
    Health,
    Heartbeat,
    Hello,
    LogAck,
    LogBatch,
    LogEntry,
    Message,
    RequestAck,
    StateAck,
    StateReport,
    Task,
    UploadAck,
    UploadChunk,
    UploadOffer,
    Welcome,
)
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import ManagerTransport
from swarmdeploy.transport.errors import TransportClosed

log = logging.getLogger(__name__)


def tar_gz(files: Mapping[str, bytes | str], modes: dict[str, int] | None = None) -> bytes:
    """A tar.gz holding ``files`` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (modes or {}).get(name, 0o644)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class ServedTask:
    """A task the fake manager can serve: manifest bytes, signature, the signer's
    certificate and artifact blobs."""

    manifest: TaskManifest
    manifest_bytes: bytes
    signature: bytes = b""
    certificate: bytes = b""
    blobs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Upload:
    """An upload being received."""

    name: str
    size: int
    chunk_bytes: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    complete: bool = False

    def next_index(self) -> int:
        index = 0
        while index in self.chunks:
            index += 1
        return index

    def data(self) -> bytes:
        return b"".join(self.chunks[i] for i in range(len(self.chunks)))


class FakeManager:
    """See the module docstring. ``start`` runs its receive loop; ``close`` ends it."""

    def __init__(self, transport: ManagerTransport, *, heartbeat_s: float = 15.0) -> None:
        self.transport = transport
        self.heartbeat_s = heartbeat_s
        self.tasks: dict[str, ServedTask] = {}
        self.reports: list[tuple[str, StateReport]] = []
        self.states: dict[tuple[str, str], TargetState] = {}
        self.logs: dict[str, list[LogEntry]] = defaultdict(list)
        self.hellos: list[tuple[str, Hello]] = []
        self.acks: list[tuple[str, RequestAck]] = []
        self.health: list[tuple[str, Health]] = []
        self.heartbeats: list[str] = []
        self.byes: list[str] = []
        self.errors: list[tuple[str, Error]] = []
        self.chunk_requests: list[ChunkRequest] = []
        self.uploads: dict[str, Upload] = {}
        self.refuse: dict[tuple[str, TargetState], TargetState] = {}
        self.ack_logs = True
        self.drop_chunks = 0  # answer no chunk request until this many were dropped
        self.serve_limit: int | None = None  # answer at most this many chunk requests
        self.corrupt_chunks = 0  # flip a byte in this many chunk answers
        self.served_chunks: list[int] = []
        self.busy_fetches = 0  # answer this many fetch_task with error{busy}
        self.log_batches = 0
        self.revocations = b""  # the revocation list sent in every welcome
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    # --- set-up by the test ------------------------------------------------------------

    def add_task(
        self,
        task_id: str,
        *,
        files: Mapping[str, bytes | str] | None = None,
        archive: bytes | None = None,
        install: list[str] | None = None,
        run: list[str] | None = None,
        kind: str = "deploy",
        debug: bool = True,
        auto_restart: bool = False,
        build_commands: list[str] | None = None,
        build_artifacts: list[str] | None = None,
        chunk_bytes: int = 256 * 1024,
        manifest_task_id: str | None = None,
    ) -> ServedTask:
        """Make a task servable; returns it (set ``signature`` on it to sign)."""
        blobs: dict[str, bytes] = {}
        artifacts = []
        payload = archive if archive is not None else (tar_gz(files) if files else None)
        if payload is not None:
            digest = hashlib.sha256(payload).hexdigest()
            blobs[digest] = payload
            artifacts.append(
                ArtifactInfo(
                    name="package.tar.gz",
                    sha256=digest,
                    size_bytes=len(payload),
                    chunk_bytes=chunk_bytes,
                )
            )
        manifest = TaskManifest(
            task_id=manifest_task_id or task_id,
            kind="build" if kind == "build" else "deploy",
            debug=debug,
            created_at_ms=int(time.time() * 1000),
            artifacts=artifacts,
            install=install or [],
            run=run or [],
            auto_restart=auto_restart,
            build_commands=build_commands or [],
            build_artifacts=build_artifacts or [],
        )
        served = ServedTask(manifest, encode_manifest(manifest), blobs=blobs)
        self.tasks[task_id] = served
        return served

    async def announce(self, target: str, task_id: str, *, size_bytes: int | None = None) -> None:
        """Send the announcement of a task added with :meth:`add_task`."""
        served = self.tasks[task_id]
        size = sum(len(b) for b in served.blobs.values()) if size_bytes is None else size_bytes
        msg = Announce(
            task_id=task_id, kind=served.manifest.kind, size_bytes=size, debug=served.manifest.debug
        )
        assert await self.transport.send(target, msg)

    async def send(self, target: str, msg: Message) -> bool:
        return await self.transport.send(target, msg)

    # --- queries ---------------------------------------------------------------------

    def state(self, target: str, task_id: str) -> TargetState | None:
        return self.states.get((target, task_id))

    def states_of(self, target: str, task_id: str) -> list[TargetState]:
        return [r.state for t, r in self.reports if t == target and r.task_id == task_id]

    def reason(self, target: str, task_id: str) -> str:
        reasons = [r.reason for t, r in self.reports if t == target and r.task_id == task_id]
        return reasons[-1] if reasons else ""

    def outputs(self, target: str, task_id: str | None = None) -> list[str]:
        return [e.output for e in self.logs[target] if task_id is None or e.task == task_id]

    def ack_for(self, target: str, request_id: str) -> RequestAck | None:
        found = [a for t, a in self.acks if t == target and a.request_id == request_id]
        return found[-1] if found else None

    # --- the loop --------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.transport.close()

    async def _loop(self) -> None:
        while True:
            try:
                got = await self.transport.recv()
            except TransportClosed:
                return
            if got is None:
                continue
            target, msg = got
            try:
                await self._handle(target, msg)
            except Exception:
                log.exception("fake manager failed on %r", msg)
            self.changed.set()

    async def _handle(self, target: str, msg: Message) -> None:
        if isinstance(msg, Hello):
            self.hellos.append((target, msg))
            await self.send(
                target,
                Welcome(
                    log_acked_seq=len(self.logs[target]),
                    heartbeat_interval_s=self.heartbeat_s,
                    server_time_ms=int(time.time() * 1000),
                    revocations=self.revocations,
                ),
            )
            for report in msg.tasks:
                await self._on_state(
                    target,
                    StateReport(
                        task_id=report.task_id,
                        state=report.state,
                        reason=report.reason,
                        at_ms=report.at_ms,
                    ),
                )
        elif isinstance(msg, StateReport):
            await self._on_state(target, msg)
        elif isinstance(msg, LogBatch):
            await self._on_logs(target, msg)
        elif isinstance(msg, FetchTask):
            await self._on_fetch(target, msg)
        elif isinstance(msg, ChunkRequest):
            await self._on_chunk_request(target, msg)
        elif isinstance(msg, UploadOffer | UploadChunk):
            await self._on_upload(target, msg)
        elif isinstance(msg, RequestAck):
            self.acks.append((target, msg))
        elif isinstance(msg, Health):
            self.health.append((target, msg))
        elif isinstance(msg, Heartbeat):
            self.heartbeats.append(target)
        elif isinstance(msg, Bye):
            self.byes.append(target)

    async def _on_state(self, target: str, msg: StateReport) -> None:
        self.reports.append((target, msg))
        current = self.refuse.get((msg.task_id, msg.state))
        if current is not None:
            self.states[(target, msg.task_id)] = current
            ack = StateAck(task_id=msg.task_id, state=msg.state, ok=False, current=current)
        else:
            self.states[(target, msg.task_id)] = msg.state
            ack = StateAck(task_id=msg.task_id, state=msg.state, ok=True)
        await self.send(target, ack)

    async def _on_logs(self, target: str, msg: LogBatch) -> None:
        self.log_batches += 1
        stored = self.logs[target]
        for entry in msg.entries:
            if entry.seq == len(stored) + 1:  # §6.7: exactly the next seq, else ignored
                stored.append(entry)
        if self.ack_logs:
            await self.send(target, LogAck(upto_seq=len(stored)))

    async def _on_fetch(self, target: str, msg: FetchTask) -> None:
        served = self.tasks.get(msg.task_id)
        if self.busy_fetches > 0:
            self.busy_fetches -= 1
            await self.send(
                target, Error(code="busy", in_reply_to="fetch_task", task_id=msg.task_id)
            )
            return
        if served is None:
            err = Error(code="unknown_task", in_reply_to="fetch_task", task_id=msg.task_id)
            await self.send(target, err)
            return
        await self.send(
            target,
            Task(
                task_id=msg.task_id,
                manifest=served.manifest_bytes,
                signature=served.signature,
                certificate=served.certificate,
            ),
        )

    async def _on_chunk_request(self, target: str, msg: ChunkRequest) -> None:
        self.chunk_requests.append(msg)
        if self.drop_chunks > 0:
            self.drop_chunks -= 1
            return
        if self.serve_limit is not None and len(self.served_chunks) >= self.serve_limit:
            return
        served = self.tasks[msg.task_id]
        info = served.manifest.artifact(msg.sha256)
        offset, length = info.chunk_span(msg.index)
        data = served.blobs[msg.sha256][offset : offset + length]
        if self.corrupt_chunks > 0:
            self.corrupt_chunks -= 1
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self.served_chunks.append(msg.index)
        chunk = Chunk(task_id=msg.task_id, sha256=msg.sha256, index=msg.index, data=data)
        await self.send(target, chunk)

    async def _on_upload(self, target: str, msg: UploadOffer | UploadChunk) -> None:
        if isinstance(msg, UploadOffer):
            upload = self.uploads.setdefault(
                msg.sha256, Upload(msg.name, msg.size_bytes, msg.chunk_bytes)
            )
        else:
            upload = self.uploads[msg.sha256]
            upload.chunks[msg.index] = msg.data
        count = -(-upload.size // upload.chunk_bytes)
        if upload.next_index() >= count and not upload.complete:
            upload.complete = hashlib.sha256(upload.data()).hexdigest() == msg.sha256
        ack = UploadAck(
            task_id=msg.task_id,
            sha256=msg.sha256,
            next_index=upload.next_index(),
            complete=upload.complete,
        )
        await self.send(target, ack)
