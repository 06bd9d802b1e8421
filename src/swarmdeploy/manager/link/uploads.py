"""Receiving build artifacts: chunked, resumable, digest-verified (docs/protocol.md §6.6).

The build host offers an artifact (``upload_offer``) and pushes ``upload_chunk``s; the manager
writes chunk ``i`` at its offset in a partial file (``<root>/<task>/<sha256>.part``, next to
the blob store) and answers every message with ``upload_ack{next_index}``, the number of
leading chunks it holds. Chunks arrive in order on one connection, so only chunk
``next_index`` is written; any other index is answered with the current ``next_index`` (a
repeat, or a gap the agent fills after its timeout).

Progress is an :class:`~swarmdeploy.storage.records.UploadRecord` in storage (moved forward
by compare-and-set after the chunk is on disk), so an upload resumes after a disconnect or a
manager restart. An offer whose record claims more than its partial file holds (the file was
lost, or another replica without it) starts the upload over. When the last chunk is in, the
file's SHA-256 is checked (``error{digest_mismatch}`` discards it: the agent starts over) and
the file moves into the :class:`~swarmdeploy.manager.services.blobs.BlobStore`; the record of
the completed upload stays, and :meth:`UploadReceiver.completed` lists what deploy targets
fetch. Deleting a task deletes its records (storage); :meth:`UploadReceiver.remove_orphans`
then deletes the partial files no record needs, and discards unfinished uploads whose partial
file was not written for ``idle_expiry_ms`` (record and file: a later offer starts over). It
runs at manager start (before agents are served: a resumable upload keeps its file, orphans
of a crash go) and from the link's maintenance pass.

Whether a target may upload for a task is the caller's decision (it knows the task rows).
Memory is bounded by one chunk per message; file work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
from pathlib import Path

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.services.blobs import BlobStore, file_sha256
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Error, UploadAck, UploadChunk, UploadOffer
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import UploadRecord

log = logging.getLogger(__name__)

_MAX_UPLOADS_PER_TASK = 64
#: An unfinished upload whose partial file was not written for this long is discarded.
UPLOAD_IDLE_EXPIRY_MS = 24 * 3_600_000
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

Message = UploadOffer | UploadChunk


def _pwrite(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _reset(part: Path) -> None:
    part.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part.unlink(missing_ok=True)
    part.touch(mode=0o600)


def _holds(part: Path, upload: UploadRecord) -> bool:
    """Whether the partial file holds the ``next_index`` chunks the record claims."""
    try:
        size = part.stat().st_size
    except FileNotFoundError:
        return False
    return size >= min(upload.size_bytes, upload.next_index * upload.chunk_bytes)


def _ack(msg: Message, upload: UploadRecord) -> UploadAck:
    return UploadAck(
        task_id=msg.task_id,
        sha256=msg.sha256,
        next_index=upload.next_index,
        complete=upload.complete,
    )


def _error(msg: Message, code: str, text: str) -> Error:
    index = msg.index if isinstance(msg, UploadChunk) else -1
    return Error(
        code=code,
        message=text,
        in_reply_to="upload_chunk" if index >= 0 else "upload_offer",
        task_id=msg.task_id,
        sha256=msg.sha256,
        index=index,
    )


class UploadReceiver:
    """Build-artifact uploads, progress in ``storage``, partial files under ``root``."""

    def __init__(
        self,
        root: Path,
        storage: Storage,
        blobs: BlobStore,
        *,
        chunk_bytes: int,
        max_upload_bytes: int,
        clock: Clock,
        idle_expiry_ms: int = UPLOAD_IDLE_EXPIRY_MS,
    ) -> None:
        self._root = root
        self._idle_expiry_ms = idle_expiry_ms
        self._storage = storage
        self._blobs = blobs
        self._chunk_bytes = chunk_bytes
        self._max_bytes = max_upload_bytes
        self._clock = clock

    def _part(self, task_id: str, sha256: str) -> Path:
        return self._root / task_id / f"{sha256}.part"

    async def offer(self, msg: UploadOffer) -> UploadAck | Error:
        """Start or resume an upload; the ack names the chunk to send next."""
        if msg.size_bytes > self._max_bytes:
            return _error(msg, "too_large", f"artifacts are limited to {self._max_bytes} B")
        part = self._part(msg.task_id, msg.sha256)
        upload = await self._storage.get_upload(msg.task_id, msg.sha256)
        if upload is not None and (upload.size_bytes, upload.chunk_bytes) == (
            msg.size_bytes,
            msg.chunk_bytes,
        ):
            if upload.complete or await asyncio.to_thread(_holds, part, upload):
                return _ack(msg, upload)
            log.warning("task %s: partial upload of %s is missing; starting over",
                        msg.task_id, upload.name)  # fmt: skip
        elif upload is None and (
            len(await self._storage.list_uploads(msg.task_id)) >= _MAX_UPLOADS_PER_TASK
        ):
            return _error(msg, "too_large", "too many artifacts for one task")
        upload = UploadRecord(
            task_id=msg.task_id,
            sha256=msg.sha256,
            name=msg.name,
            size_bytes=msg.size_bytes,
            chunk_bytes=msg.chunk_bytes,
            created_at=self._clock(),
        )
        await asyncio.to_thread(_reset, part)
        try:
            await self._storage.start_upload(upload)
        except NotFound:
            await asyncio.to_thread(part.unlink, missing_ok=True)
            return _error(msg, "unknown_task", f"no task {msg.task_id}")
        if msg.size_bytes == 0:
            return await self._finish(msg, upload)
        log.info("task %s: receiving %s (%d bytes)", msg.task_id, msg.name, msg.size_bytes)
        return _ack(msg, upload)

    async def chunk(self, msg: UploadChunk) -> UploadAck | Error:
        """Store chunk ``msg.index`` if it is the next one; ack with the new ``next_index``."""
        upload = await self._storage.get_upload(msg.task_id, msg.sha256)
        if upload is None:
            return _error(msg, "unknown_artifact", "offer the upload first")
        if upload.complete or msg.index != upload.next_index:
            return _ack(msg, upload)
        offset = msg.index * upload.chunk_bytes
        expected = min(upload.chunk_bytes, upload.size_bytes - offset)
        if len(msg.data) != expected:
            text = f"chunk {msg.index} must hold {expected} bytes, not {len(msg.data)}"
            return _error(msg, "invalid_message", text)
        await asyncio.to_thread(_pwrite, self._part(msg.task_id, msg.sha256), offset, msg.data)
        if msg.index + 1 == upload.chunk_count:
            return await self._finish(msg, upload)
        if await self._storage.advance_upload(
            msg.task_id, msg.sha256, expected_next=upload.next_index, next_index=msg.index + 1
        ):
            return _ack(msg, dataclasses.replace(upload, next_index=msg.index + 1))
        current = await self._storage.get_upload(msg.task_id, msg.sha256)  # changed meanwhile
        if current is None:
            return _error(msg, "unknown_artifact", "offer the upload first")
        return _ack(msg, current)

    async def _finish(self, msg: Message, upload: UploadRecord) -> UploadAck | Error:
        part = self._part(msg.task_id, msg.sha256)
        digest = _EMPTY_SHA256 if upload.size_bytes == 0 else None
        if digest is None:
            digest = await asyncio.to_thread(file_sha256, part)
        if digest != msg.sha256:
            log.warning("task %s: upload %s does not match its digest", msg.task_id, upload.name)
            await self._storage.delete_upload(msg.task_id, msg.sha256)
            await asyncio.to_thread(part.unlink, missing_ok=True)
            return _error(msg, "digest_mismatch", "the artifact does not match its SHA-256")
        await self._blobs.put_file(part)
        count = upload.chunk_count
        await self._storage.advance_upload(
            msg.task_id, msg.sha256, expected_next=upload.next_index, next_index=count,
            complete=True,
        )  # fmt: skip
        log.info("task %s: stored build artifact %s (%s)", msg.task_id, upload.name, digest)
        return _ack(msg, dataclasses.replace(upload, next_index=count, complete=True))

    async def completed(self, task_id: str) -> list[ArtifactInfo]:
        """The verified artifacts uploaded for ``task_id``, by name, ready to be fetched."""
        return [
            ArtifactInfo(
                name=u.name, sha256=u.sha256, size_bytes=u.size_bytes, chunk_bytes=self._chunk_bytes
            )
            for u in await self._storage.list_uploads(task_id)
            if u.complete
        ]

    async def remove_orphans(self) -> int:
        """Delete partial files without an unfinished upload record (the task was deleted,
        the upload completed or discarded); discard unfinished uploads idle for longer than
        ``idle_expiry_ms`` (partial file last written, or record created when there is no
        file, before then): their record and file go. Empty task folders go too. Returns
        how many files went. A resumable upload (unfinished, not idle) keeps its file."""
        removed = 0
        idle_before = self._clock() - self._idle_expiry_ms
        for folder in await asyncio.to_thread(_folders, self._root):
            unfinished = [
                u for u in await self._storage.list_uploads(folder.name) if not u.complete
            ]
            stale = await asyncio.to_thread(_stale, folder, unfinished, idle_before)
            for upload in stale:
                await self._storage.delete_upload(upload.task_id, upload.sha256)
                log.info("task %s: upload of %s idle for too long; discarded",
                         upload.task_id, upload.name)  # fmt: skip
            keep = {u.sha256 for u in unfinished} - {u.sha256 for u in stale}
            removed += await asyncio.to_thread(_prune, folder, keep)
        return removed


def _folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir())


def _stale(folder: Path, unfinished: list[UploadRecord], before_ms: int) -> list[UploadRecord]:
    """The unfinished uploads idle since before ``before_ms``."""
    stale = []
    for upload in unfinished:
        try:
            last_ms = (folder / f"{upload.sha256}.part").stat().st_mtime_ns // 1_000_000
        except FileNotFoundError:
            last_ms = upload.created_at
        if last_ms < before_ms:
            stale.append(upload)
    return stale


def _prune(folder: Path, keep: set[str]) -> int:
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and path.name.removesuffix(".part") not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    if not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
    return removed
