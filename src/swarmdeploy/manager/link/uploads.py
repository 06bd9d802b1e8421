"""Receiving build artifacts: chunked, resumable, digest-verified (docs/protocol.md §6.6).

The build host offers an artifact (``upload_offer``) and pushes ``upload_chunk``s; the manager
writes chunk ``i`` at its offset in a partial file under ``DATA_DIR/uploads/<task>/`` and
answers every message with ``upload_ack{next_index}``, the number of leading chunks it holds.
Chunks arrive in order on one connection, so only chunk ``next_index`` is written; any other
index is answered with the current ``next_index`` (a repeat, or a gap the agent fills after
its timeout). Progress is saved next to the partial file, so an upload resumes after a
disconnect or a manager restart. When the last chunk is in, the file's SHA-256 is checked
(``error{digest_mismatch}`` discards it: the agent starts over) and the file moves into the
:class:`~swarmdeploy.manager.services.blobs.BlobStore`; the record of the completed upload
stays, and :meth:`UploadReceiver.completed` lists what deploy targets fetch.

Whether a target may upload for a task is the caller's decision (it knows the task rows).
Memory is bounded by one chunk per message; hashing streams the file in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

from swarmdeploy.manager.services.blobs import BlobStore, file_sha256
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Error, UploadAck, UploadChunk, UploadOffer

log = logging.getLogger(__name__)

_MAX_UPLOADS_PER_TASK = 64
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclasses.dataclass(slots=True)
class Progress:
    """One upload as saved next to its partial file."""

    name: str
    size_bytes: int
    chunk_bytes: int
    next_index: int = 0
    complete: bool = False

    @property
    def chunk_count(self) -> int:
        """Number of chunks of the artifact."""
        return -(-self.size_bytes // self.chunk_bytes)


def _write_json(path: Path, data: dict[str, object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_progress(path: Path) -> Progress | None:
    try:
        data = json.loads(path.read_text())
        return Progress(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        log.warning("ignoring unreadable upload record %s: %s", path, exc)
        return None


def _pwrite(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


class UploadReceiver:
    """Build-artifact uploads under ``root`` (see the module docstring)."""

    def __init__(
        self, root: Path, blobs: BlobStore, *, chunk_bytes: int, max_upload_bytes: int
    ) -> None:
        self._root = root
        self._blobs = blobs
        self._chunk_bytes = chunk_bytes
        self._max_bytes = max_upload_bytes
        self._lock = asyncio.Lock()  # uploads of one task may come from one worker only,
        # but completed() may run from another target's worker: file work is serialised

    def _paths(self, task_id: str, sha256: str) -> tuple[Path, Path]:
        folder = self._root / task_id
        return folder / f"{sha256}.json", folder / f"{sha256}.part"

    def _ack(self, msg: UploadOffer | UploadChunk, progress: Progress) -> UploadAck:
        return UploadAck(
            task_id=msg.task_id,
            sha256=msg.sha256,
            next_index=progress.next_index,
            complete=progress.complete,
        )

    @staticmethod
    def _error(msg: UploadOffer | UploadChunk, code: str, text: str) -> Error:
        index = msg.index if isinstance(msg, UploadChunk) else -1
        return Error(
            code=code,
            message=text,
            in_reply_to="upload_chunk" if index >= 0 else "upload_offer",
            task_id=msg.task_id,
            sha256=msg.sha256,
            index=index,
        )

    async def offer(self, msg: UploadOffer) -> UploadAck | Error:
        """Start or resume an upload; the ack names the chunk to send next."""
        if msg.size_bytes > self._max_bytes:
            return self._error(msg, "too_large", f"artifacts are limited to {self._max_bytes} B")
        async with self._lock:
            meta, part = self._paths(msg.task_id, msg.sha256)
            progress = await asyncio.to_thread(_read_progress, meta)
            if progress is not None and (progress.size_bytes, progress.chunk_bytes) == (
                msg.size_bytes,
                msg.chunk_bytes,
            ):
                return self._ack(msg, progress)
            if progress is None and len(await self._records(msg.task_id)) >= _MAX_UPLOADS_PER_TASK:
                return self._error(msg, "too_large", "too many artifacts for one task")
            progress = Progress(msg.name, msg.size_bytes, msg.chunk_bytes)
            await asyncio.to_thread(self._reset, meta, part, progress)
            if msg.size_bytes == 0:
                return await self._finish(msg, progress)
            log.info("task %s: receiving %s (%d bytes)", msg.task_id, msg.name, msg.size_bytes)
            return self._ack(msg, progress)

    @staticmethod
    def _reset(meta: Path, part: Path, progress: Progress) -> None:
        meta.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        part.unlink(missing_ok=True)
        part.touch(mode=0o600)
        _write_json(meta, dataclasses.asdict(progress))

    async def chunk(self, msg: UploadChunk) -> UploadAck | Error:
        """Store chunk ``msg.index`` if it is the next one; ack with the new ``next_index``."""
        async with self._lock:
            meta, part = self._paths(msg.task_id, msg.sha256)
            progress = await asyncio.to_thread(_read_progress, meta)
            if progress is None:
                return self._error(msg, "unknown_artifact", "offer the upload first")
            if progress.complete or msg.index != progress.next_index:
                return self._ack(msg, progress)
            offset = msg.index * progress.chunk_bytes
            expected = min(progress.chunk_bytes, progress.size_bytes - offset)
            if len(msg.data) != expected:
                text = f"chunk {msg.index} must hold {expected} bytes, not {len(msg.data)}"
                return self._error(msg, "invalid_message", text)
            await asyncio.to_thread(_pwrite, part, offset, msg.data)
            progress.next_index += 1
            if progress.next_index < progress.chunk_count:
                await asyncio.to_thread(_write_json, meta, dataclasses.asdict(progress))
                return self._ack(msg, progress)
            return await self._finish(msg, progress)

    async def _finish(
        self, msg: UploadOffer | UploadChunk, progress: Progress
    ) -> UploadAck | Error:
        meta, part = self._paths(msg.task_id, msg.sha256)
        digest = _EMPTY_SHA256 if progress.size_bytes == 0 else None
        if digest is None:
            digest = await asyncio.to_thread(file_sha256, part)
        if digest != msg.sha256:
            log.warning("task %s: upload %s does not match its digest", msg.task_id, progress.name)
            await asyncio.to_thread(self._discard, meta, part)
            return self._error(msg, "digest_mismatch", "the artifact does not match its SHA-256")
        await self._blobs.put_file(part)
        progress.complete = True
        progress.next_index = progress.chunk_count
        await asyncio.to_thread(_write_json, meta, dataclasses.asdict(progress))
        log.info("task %s: stored build artifact %s (%s)", msg.task_id, progress.name, digest)
        return self._ack(msg, progress)

    @staticmethod
    def _discard(meta: Path, part: Path) -> None:
        meta.unlink(missing_ok=True)
        part.unlink(missing_ok=True)

    async def _records(self, task_id: str) -> list[tuple[str, Progress]]:
        def scan() -> list[tuple[str, Progress]]:
            folder = self._root / task_id
            if not folder.is_dir():
                return []
            found = []
            for meta in sorted(folder.glob("*.json")):
                progress = _read_progress(meta)
                if progress is not None:
                    found.append((meta.stem, progress))
            return found

        return await asyncio.to_thread(scan)

    async def completed(self, task_id: str) -> list[ArtifactInfo]:
        """The verified artifacts uploaded for ``task_id``, by name, ready to be fetched."""
        records = await self._records(task_id)
        done = sorted(((p.name, sha) for sha, p in records if p.complete), key=lambda x: x)
        sizes = {sha: p.size_bytes for sha, p in records}
        return [
            ArtifactInfo(
                name=name, sha256=sha, size_bytes=sizes[sha], chunk_bytes=self._chunk_bytes
            )
            for name, sha in done
        ]
