"""Pulling a task's artifacts chunk by chunk, resumable and verified (docs/protocol.md §6.5).

For each artifact the agent keeps ``<sha256>.part`` (chunks written at their offsets) and
``<sha256>.have`` (one byte per chunk, set once the chunk is written) in the task's
``download`` directory. A transfer interrupted by a disconnect or an agent restart therefore
resumes with the missing chunks only. Up to ``window`` requests are outstanding; a request
without an answer is sent again after ``timeout_s``, then after twice as long each time
(:class:`~swarmdeploy.agent.backoff.Backoff` per request: capped, with jitter), and at once
at every reconnect (with the backoff restarted). No new request is
made while ``paused()`` (disk low, seed 000). When every chunk is there the SHA-256 of the
whole file must equal the manifest's; a mismatch discards the file and starts over once,
then fails with :class:`~swarmdeploy.agent.errors.TaskRefused` (``artifact_mismatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from swarmdeploy.agent.backoff import Backoff
from swarmdeploy.agent.errors import TaskRefused, TransferError
from swarmdeploy.agent.reports import Send
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Chunk, ChunkRequest, Error

logger = logging.getLogger(__name__)

#: ``error`` codes after which the same request may succeed later.
TRANSIENT_CODES = frozenset({"busy", "internal"})
_HASH_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (blocking; run it in a thread for large files)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class ArtifactFetch:
    """The chunk bookkeeping of one artifact (no I/O on the network)."""

    def __init__(
        self,
        info: ArtifactInfo,
        directory: Path,
        window: int,
        timeout_s: float,
        *,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.info = info
        self.path = directory / f"{info.sha256}.bin"
        #: :meth:`verify` hashed the file in this process (not: it was complete on disk)
        self.hashed = False
        self._part = directory / f"{info.sha256}.part"
        self._have_path = directory / f"{info.sha256}.have"
        self._window = window
        self._timeout_s = timeout_s
        self._rng = rng
        self._have = bytearray(info.chunk_count)
        self._todo: deque[int] = deque()
        self._outstanding: dict[int, Backoff] = {}  # requested, not answered
        self._fd = -1
        self._have_fd = -1

    @property
    def complete(self) -> bool:
        """Whether every chunk is written."""
        return all(self._have)

    @property
    def missing(self) -> int:
        """How many chunks are still missing."""
        return self._have.count(0)

    def open(self) -> None:
        """Open (or create) the partial file and the chunk record; resume from them."""
        if self.path.exists():
            self._have = bytearray(b"\x01" * self.info.chunk_count)
            return
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self._fd = os.open(self._part, flags, 0o600)
        os.ftruncate(self._fd, self.info.size_bytes)
        self._have_fd = os.open(self._have_path, flags, 0o600)
        recorded = os.pread(self._have_fd, self.info.chunk_count + 1, 0)
        if len(recorded) == self.info.chunk_count and set(recorded) <= {0, 1}:
            self._have = bytearray(recorded)
        else:
            self._reset_record()
        self._todo = deque(i for i, got in enumerate(self._have) if not got)

    def _reset_record(self) -> None:
        self._have = bytearray(self.info.chunk_count)
        os.ftruncate(self._have_fd, 0)
        os.pwrite(self._have_fd, bytes(self._have), 0)

    def due(self, now: float) -> list[int]:
        """Indexes to request now: timed-out requests (per-request backoff), then new ones up
        to the window. Each returned index counts as sent at ``now``."""
        out = [i for i, backoff in self._outstanding.items() if backoff.due(now)]
        while self._todo and len(self._outstanding) < self._window:
            index = self._todo.popleft()
            if not self._have[index] and index not in self._outstanding:
                out.append(index)
                self._outstanding[index] = Backoff(self._timeout_s, rng=self._rng)
        for index in out:
            self._outstanding[index].sent(now)
        return out

    def unsend(self, index: int) -> None:
        """A request could not be sent: ask again later."""
        if self._outstanding.pop(index, None) is not None:
            self._todo.appendleft(index)

    def requeue_outstanding(self) -> None:
        """After a reconnect every outstanding request is lost: ask again first."""
        self._todo.extendleft(sorted(self._outstanding, reverse=True))
        self._outstanding.clear()

    def accept(self, index: int, data: bytes) -> bool:
        """Write chunk ``index`` if it is wanted and has the right length."""
        try:
            offset, length = self.info.chunk_span(index)
        except MessageError:
            return False
        if self._have[index] or len(data) != length or self._fd < 0:
            return False
        os.pwrite(self._fd, data, offset)
        self._have[index] = 1
        os.pwrite(self._have_fd, b"\x01", index)
        self._outstanding.pop(index, None)
        return True

    async def verify(self) -> bool:
        """Check the digest of the complete file; on success it moves to :attr:`path`.

        On a mismatch the chunk record is cleared so that everything is fetched again.
        """
        if self.path.exists():
            return True
        os.fsync(self._fd)
        digest = await asyncio.to_thread(sha256_file, self._part)
        if digest == self.info.sha256:
            self.hashed = True
            self.close()
            os.replace(self._part, self.path)
            with contextlib.suppress(FileNotFoundError):
                self._have_path.unlink()
            return True
        self._reset_record()
        self._todo = deque(range(self.info.chunk_count))
        self._outstanding.clear()
        return False

    def close(self) -> None:
        """Close the files (the partial state stays on disk for a later resume)."""
        for fd in (self._fd, self._have_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._have_fd = -1


class TaskTransfer:
    """Fetches every artifact of one task, one artifact after the other."""

    def __init__(
        self,
        task_id: str,
        artifacts: list[ArtifactInfo],
        directory: Path,
        send: Send,
        *,
        window: int,
        timeout_s: float,
        paused: Callable[[], bool],
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.task_id = task_id
        self._artifacts = artifacts
        self._dir = directory
        self._send = send
        self._window = window
        self._timeout_s = timeout_s
        self._paused = paused
        self._poll_s = poll_s
        self._clock = clock
        self._rng = rng
        self._active: ArtifactFetch | None = None
        self._error: TransferError | None = None
        self._wake = asyncio.Event()
        #: The files whose SHA-256 :meth:`run` checked itself (the others were on disk)
        self.verified: set[Path] = set()

    async def run(self) -> list[Path]:
        """Fetch and verify every artifact; return their files in manifest order."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths = []
        for info in self._artifacts:
            fetch = ArtifactFetch(info, self._dir, self._window, self._timeout_s, rng=self._rng)
            fetch.open()
            self._active = fetch
            try:
                paths.append(await self._fetch(fetch))
            finally:
                fetch.close()
                self._active = None
        return paths

    async def _fetch(self, fetch: ArtifactFetch) -> Path:
        for attempt in (1, 2):
            if fetch.missing:
                logger.info(
                    "task %s: fetching %d of %d chunks of %s",
                    self.task_id,
                    fetch.missing,
                    fetch.info.chunk_count,
                    fetch.info.name,
                )
            await self._pull(fetch)
            if await fetch.verify():
                if fetch.hashed:
                    self.verified.add(fetch.path)
                return fetch.path
            logger.warning("task %s: digest mismatch of %s (attempt %d)", self.task_id,
                           fetch.info.name, attempt)  # fmt: skip
        raise TaskRefused(
            "artifact_mismatch",
            f"artifact {fetch.info.name}: digest mismatch with the signed SHA-256, twice",
        )

    async def _pull(self, fetch: ArtifactFetch) -> None:
        sha = fetch.info.sha256
        while not fetch.complete:
            if self._error is not None:
                raise self._error
            self._wake.clear()
            if not self._paused():
                for index in fetch.due(self._clock()):
                    request = ChunkRequest(task_id=self.task_id, sha256=sha, index=index)
                    if not await self._send(request):
                        fetch.unsend(index)
                        break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()

    def on_chunk(self, msg: Chunk) -> None:
        """A ``chunk`` arrived (ignored unless it belongs to the artifact being fetched)."""
        fetch = self._active
        if fetch is None or msg.task_id != self.task_id or msg.sha256 != fetch.info.sha256:
            return
        if fetch.accept(msg.index, msg.data):
            self._wake.set()

    def on_error(self, msg: Error) -> None:
        """An ``error`` answering a ``chunk_request``: retry later or give up."""
        fetch = self._active
        if fetch is None or (msg.sha256 and msg.sha256 != fetch.info.sha256):
            return
        if msg.code in TRANSIENT_CODES:
            if msg.index >= 0:
                fetch.unsend(msg.index)
            return
        self._error = TransferError(
            f"the manager refused {fetch.info.name}: {msg.code}: {msg.message}".strip()
        )
        self._wake.set()

    def on_reconnect(self) -> None:
        """The link was re-established: outstanding requests are lost, ask again."""
        if self._active is not None:
            self._active.requeue_outstanding()
            self._wake.set()
