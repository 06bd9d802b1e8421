"""Pushing a build artifact to the manager, chunk by chunk (docs/protocol.md §6.6).

The agent offers the artifact (``upload_offer``); the manager answers ``upload_ack`` with the
number of leading chunks it already holds (``next_index``); the agent sends ``upload_chunk``s
from there, at most ``window`` beyond the last acknowledged index, and the manager acks each.
``complete=true`` means every chunk is stored and the digest verified. Without an ack for
``timeout_s`` the agent goes back to the last acknowledged chunk; after a reconnect it offers
again and resumes at the manager's ``next_index``. A ``digest_mismatch`` error starts over
once; other errors fail the upload with :class:`~swarmdeploy.agent.errors.TransferError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from swarmdeploy.agent.errors import TransferError
from swarmdeploy.agent.reports import Send
from swarmdeploy.agent.transfer import TRANSIENT_CODES
from swarmdeploy.protocol.messages import (
    DEFAULT_CHUNK_BYTES,
    Error,
    UploadAck,
    UploadChunk,
    UploadOffer,
)

logger = logging.getLogger(__name__)


class ArtifactUpload:
    """One build artifact on its way to the manager. Drive it with :meth:`run`."""

    def __init__(
        self,
        task_id: str,
        path: Path,
        sha256: str,
        name: str,
        send: Send,
        *,
        window: int,
        timeout_s: float,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        poll_s: float = 0.5,
    ) -> None:
        self.task_id = task_id
        self.sha256 = sha256
        self._path = path
        self._name = name
        self._send = send
        self._window = window
        self._timeout_s = timeout_s
        self._chunk_bytes = chunk_bytes
        self._poll_s = poll_s
        self._size = path.stat().st_size
        self._count = -(-self._size // chunk_bytes)
        self._acked: int | None = None  # the manager's next_index on this connection
        self._sent = 0  # chunks [0, _sent) were sent at least once since the last ack reset
        self._progress_at = 0.0
        self._complete = False
        self._restarts = 0
        self._error: TransferError | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Upload until the manager confirms the complete, verified artifact."""
        fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while not self._complete:
                if self._error is not None:
                    raise self._error
                self._wake.clear()
                await self._step(fd, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_s):
                        await self._wake.wait()
        finally:
            os.close(fd)
        logger.info("task %s: uploaded %s (%d bytes)", self.task_id, self._name, self._size)

    async def _step(self, fd: int, now: float) -> None:
        stalled = now - self._progress_at >= self._timeout_s
        if self._acked is None:
            if stalled:
                self._progress_at = now
                await self._send(
                    UploadOffer(
                        task_id=self.task_id,
                        sha256=self.sha256,
                        name=self._name,
                        size_bytes=self._size,
                        chunk_bytes=self._chunk_bytes,
                    )
                )
            return
        if stalled:
            self._sent = self._acked  # nothing acknowledged for a while: go back
            self._progress_at = now
        while self._sent < min(self._count, self._acked + self._window):
            offset = self._sent * self._chunk_bytes
            data = os.pread(fd, self._chunk_bytes, offset)
            chunk = UploadChunk(
                task_id=self.task_id, sha256=self.sha256, index=self._sent, data=data
            )
            if not await self._send(chunk):
                return
            self._sent += 1

    def on_ack(self, msg: UploadAck) -> None:
        """``upload_ack`` for this artifact: move the window on (or finish)."""
        if msg.task_id != self.task_id or msg.sha256 != self.sha256:
            return
        self._complete = msg.complete
        self._acked = min(msg.next_index, self._count)
        self._sent = max(self._sent, self._acked)
        self._progress_at = time.monotonic()
        self._wake.set()

    def on_error(self, msg: Error) -> None:
        """An ``error`` answering an upload message of this artifact."""
        if msg.sha256 and msg.sha256 != self.sha256:
            return
        if msg.code in TRANSIENT_CODES:
            return  # the stall timeout sends again
        if msg.code == "digest_mismatch" and self._restarts == 0:
            self._restarts += 1
            logger.warning("task %s: manager saw a digest mismatch; uploading again", self.task_id)
            self.on_reconnect()
            return
        self._error = TransferError(f"upload of {self._name} refused: {msg.code}: {msg.message}")
        self._wake.set()

    def on_reconnect(self) -> None:
        """A new connection: offer again and resume where the manager stands."""
        self._acked = None
        self._sent = 0
        self._progress_at = 0.0
        self._wake.set()
