"""Pulling a task's artifacts over the HTTP link with ``Range`` requests (ADR 0013).

The HTTP agent fetches each artifact as one sealed stream (``docs/protocol.md`` §10) instead
of ``chunk_request`` messages. It appends every chunk, once its frame opened, to
``<sha256>.range`` in the task's ``download`` directory; a dropped connection or an agent
restart resumes with a ``Range`` from the file's length (cut down to a whole chunk). No
request is made while ``paused()`` (disk low, connectivity down: seed 000), and a download
running when that happens stops at the next chunk. When the file is complete its SHA-256
must equal the signed manifest's, exactly as for chunked transfers
(:mod:`~swarmdeploy.agent.transfer`): a mismatch discards it and starts over once, then
fails with ``artifact_mismatch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from swarmdeploy.agent.errors import TaskRefused, TransferError
from swarmdeploy.agent.transfer import sha256_file
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Chunk, Error
from swarmdeploy.transport.errors import PayloadRefused

logger = logging.getLogger(__name__)

_RETRY_MAX_S = 30.0
_RETRY_AFTER_MAX_S = 300.0  # a manager's Retry-After is followed up to this long


@runtime_checkable
class RangeSource(Protocol):
    """A link that serves ranged payload downloads (the HTTP agent transport)."""

    async def download(
        self, task_id: str, info: ArtifactInfo, have: int, write: Callable[[bytes], bool]
    ) -> None:
        """Fetch ``info`` from byte ``have`` to its end, chunk by chunk into ``write``."""
        ...


def resume_point(size: int, chunk_bytes: int, length: int) -> int:
    """Where a download with ``length`` bytes on disk resumes: a whole number of chunks
    (a torn last write is dropped); 0 when the file is longer than the artifact."""
    if length > size:
        return 0
    return length if length == size else length - length % chunk_bytes


class RangedTransfer:
    """Fetches every artifact of one task over :class:`RangeSource` (see the module
    docstring); the counterpart of :class:`~swarmdeploy.agent.transfer.TaskTransfer`."""

    def __init__(
        self,
        task_id: str,
        artifacts: list[ArtifactInfo],
        directory: Path,
        source: RangeSource,
        *,
        retry_s: float,
        paused: Callable[[], bool],
        poll_s: float = 0.5,
    ) -> None:
        self.task_id = task_id
        self._artifacts = artifacts
        self._dir = directory
        self._source = source
        self._retry_s = retry_s
        self._paused = paused
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        #: The files whose SHA-256 :meth:`run` checked itself (the others were on disk)
        self.verified: set[Path] = set()

    async def run(self) -> list[Path]:
        """Fetch and verify every artifact; return their files in manifest order."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return [await self._fetch(info) for info in self._artifacts]

    async def _fetch(self, info: ArtifactInfo) -> Path:
        final = self._dir / f"{info.sha256}.bin"
        if final.exists():
            return final
        part = self._dir / f"{info.sha256}.range"
        for attempt in (1, 2):
            await self._pull(info, part)
            if await asyncio.to_thread(sha256_file, part) == info.sha256:
                os.replace(part, final)
                self.verified.add(final)
                return final
            logger.warning("task %s: digest mismatch of %s (attempt %d)", self.task_id,
                           info.name, attempt)  # fmt: skip
            part.unlink()
        raise TaskRefused(
            "artifact_mismatch",
            f"artifact {info.name}: digest mismatch with the signed SHA-256, twice",
        )

    async def _pull(self, info: ArtifactInfo, part: Path) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(part, flags, 0o600)
        failures = 0
        try:
            while True:
                have = resume_point(info.size_bytes, info.chunk_bytes, os.fstat(fd).st_size)
                os.ftruncate(fd, have)
                if have == info.size_bytes:
                    os.fsync(fd)
                    return
                if self._paused():
                    await self._nap(self._poll_s)
                    continue
                if have:
                    logger.info("task %s: resuming %s at byte %d of %d", self.task_id,
                                info.name, have, info.size_bytes)  # fmt: skip
                wait_s = await self._attempt(info, fd, have)
                if wait_s is None:
                    failures = 0
                    continue
                failures += 1
                await self._nap(max(wait_s, self._retry_delay(failures)))
        finally:
            os.close(fd)

    async def _attempt(self, info: ArtifactInfo, fd: int, have: int) -> float | None:
        """One ranged request from ``have``: ``None`` when it ended or made progress (go on
        at once), else the least wait before the next (the manager's ``Retry-After`` when
        it was busy, 0 otherwise; the back-off may wait longer)."""
        offset = have

        def write(data: bytes) -> bool:
            nonlocal offset
            os.pwrite(fd, data, offset)
            offset += len(data)
            return not self._paused()

        try:
            await self._source.download(self.task_id, info, have, write)
        except PayloadRefused as exc:
            raise TransferError(f"the manager refused {info.name}: {exc}") from None
        except OSError as exc:
            logger.info("task %s: download of %s interrupted at byte %d: %s",
                        self.task_id, info.name, offset, exc)  # fmt: skip
            if offset > have:
                return None  # progress made: try again at once
            return min(getattr(exc, "retry_after_s", None) or 0.0, _RETRY_AFTER_MAX_S)
        return None

    def _retry_delay(self, failures: int) -> float:
        base = min(self._retry_s * 2.0 ** min(failures - 1, 10), _RETRY_MAX_S)
        return base * random.uniform(0.5, 1.0)

    async def _nap(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def on_chunk(self, msg: Chunk) -> None:
        """Chunks do not travel as messages here (kept for the processor's interface)."""

    def on_error(self, msg: Error) -> None:
        """Errors of chunk requests do not concern ranged downloads."""

    def on_reconnect(self) -> None:
        """The link is back: a waiting retry starts now."""
        self._wake.set()
