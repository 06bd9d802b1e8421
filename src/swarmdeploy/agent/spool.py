"""The response collector's on-disk log spool and the ring of recent non-debug lines.

No log line is lost while the agent is offline and none is stored twice (DESIGN.md): every
spooled line gets a per-agent ``seq`` that only grows, also across restarts; the manager
stores ``(agent, seq)`` once and acknowledges the highest ``seq`` it holds; :meth:`LogSpool.ack`
then drops everything up to it.

File format (``spool.bin``)::

    header  b"SDSPOOL1" + acked_seq (u64 big endian)
    record  length (u32 BE) + crc32(payload) (u32 BE) + payload (msgpack SpooledEntry)

Durability (fsync policy): :meth:`LogSpool.append` is one ``write()`` -- the record survives
an agent crash once it returns. It survives power loss after :meth:`LogSpool.sync` (or
``append(durable=True)``, used for errors and stage markers). :meth:`LogSpool.pending` syncs
before it hands records out, so a record is never sent before it is durable: a torn tail found
on reopen (power loss) only ever holds unsent records, which is why re-using their ``seq`` is
safe. Compaction (ack, size cap) writes a temporary file, fsyncs it and renames it over the
spool, so a crash leaves either the old or the new file.

Size cap: the file never grows past ``max_bytes``. When full, the oldest non-error lines are
dropped first (then, if needed, the oldest error lines) down to 3/4 of the cap, and a marker
line (``error=True``) tells how many were dropped.

All methods do blocking file I/O and are not thread-safe; call them from one thread.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import time
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from swarmdeploy.agent.errors import SpoolError

logger = logging.getLogger(__name__)

_MAGIC = b"SDSPOOL1"
_HEADER = struct.Struct(">8sQ")
_FRAME = struct.Struct(">II")
#: ``command`` of lines the agent writes about itself (as in the original tool).
AGENT_COMMAND = "$agent"


class LogEntry(msgspec.Struct, frozen=True, array_like=True):
    """One log line as collected on the device (``time_ms``: epoch milliseconds)."""

    time_ms: int
    task: str
    stage: str
    command: str
    output: str
    error: bool = False


class SpooledEntry(msgspec.Struct, frozen=True, array_like=True):
    """A log line with its spool sequence number."""

    seq: int
    entry: LogEntry


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """Limits of the spool."""

    max_bytes: int = 8 << 20
    max_record_bytes: int = 64 << 10


class LogSpool:
    """Append-only log spool with acknowledgement-driven compaction. See the module doc."""

    def __init__(self, path: Path, config: SpoolConfig | None = None) -> None:
        self.path = path
        self._config = config or SpoolConfig()
        if self._config.max_bytes < 4 * self._config.max_record_bytes:
            raise ValueError("max_bytes must hold at least four maximal records")
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(SpooledEntry)
        self._seqs = array("q")
        self._offsets = array("q")
        self._errors = bytearray()
        self._size = _HEADER.size
        self._dirty = False
        self.acked_seq = 0
        self.dropped_total = 0
        self._next_seq = 1
        self._fd = -1
        try:
            self._open()
        except OSError as exc:
            raise SpoolError(f"cannot open log spool {path}: {exc}") from exc

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next appended line gets."""
        return self._next_seq

    @property
    def size_bytes(self) -> int:
        """Current size of the spool file."""
        return self._size

    def __len__(self) -> int:
        return len(self._seqs)

    def append(self, entry: LogEntry, *, durable: bool = False) -> int:
        """Spool ``entry``; return its ``seq``. ``durable`` fsyncs before returning."""
        frame = self._frame(self._next_seq, entry)
        if self._size + len(frame) > self._config.max_bytes:
            self._make_room(len(frame))
            frame = self._frame(self._next_seq, entry)
        seq = self._write(frame, self._next_seq, entry.error)
        if durable:
            self.sync()
        return seq

    def sync(self) -> None:
        """fsync the spool file if anything was appended since the last sync."""
        if self._dirty:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise SpoolError(f"cannot sync log spool {self.path}: {exc}") from exc
            self._dirty = False

    def pending(self, after_seq: int = 0, limit: int = 500) -> list[SpooledEntry]:
        """Up to ``limit`` unacknowledged lines with ``seq > after_seq``, oldest first.

        Syncs first: what this returns is durable.
        """
        self.sync()
        start = bisect_right(self._seqs, max(after_seq, self.acked_seq))
        out = []
        with open(self.path, "rb") as fh:
            for i in range(start, min(start + limit, len(self._seqs))):
                fh.seek(self._offsets[i])
                length, _ = _FRAME.unpack(fh.read(_FRAME.size))
                out.append(self._decoder.decode(fh.read(length)))
        return out

    def ack(self, seq: int) -> int:
        """Drop every line with ``seq`` up to and including ``seq``; return how many."""
        seq = min(seq, self._next_seq - 1)
        if seq <= self.acked_seq:
            return 0
        keep = [i for i in range(len(self._seqs)) if self._seqs[i] > seq]
        dropped = len(self._seqs) - len(keep)
        self._rewrite(seq, keep)
        return dropped

    def close(self) -> None:
        """Sync and close the file."""
        self.sync()
        os.close(self._fd)

    # ------------------------------------------------------------------ internals

    def _open(self) -> None:
        if self.path.exists() and not self._valid_header():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
            logger.error("log spool %s is damaged; moved aside to %s", self.path, aside)
            os.replace(self.path, aside)
        if not self.path.exists():
            # A new spool (or a lost one) starts at a time-based seq, above anything an earlier
            # spool of this device can have handed out (counts, not microseconds).
            self._rewrite(time.time_ns() // 1000, [])
            self._next_seq = self.acked_seq + 1
            return
        with open(self.path, "rb") as fh:
            _, self.acked_seq = _HEADER.unpack(fh.read(_HEADER.size))
            good = self._scan(fh)
        if good < os.path.getsize(self.path):
            logger.warning("log spool %s: dropping a torn tail at byte %d", self.path, good)
            os.truncate(self.path, good)
        self._size = good
        self._next_seq = max([self.acked_seq, *self._seqs[-1:]]) + 1
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def _valid_header(self) -> bool:
        with open(self.path, "rb") as fh:
            head = fh.read(_HEADER.size)
        return len(head) == _HEADER.size and head.startswith(_MAGIC)

    def _scan(self, fh: BinaryIO) -> int:
        """Index the records; return the offset after the last valid one."""
        offset = _HEADER.size
        last = self.acked_seq
        while True:
            head = fh.read(_FRAME.size)
            if len(head) < _FRAME.size:
                return offset
            length, crc = _FRAME.unpack(head)
            payload = fh.read(length) if length <= self._config.max_record_bytes else b""
            if len(payload) != length or zlib.crc32(payload) != crc:
                return offset
            try:
                record = self._decoder.decode(payload)
            except msgspec.DecodeError:
                return offset
            if record.seq <= last:
                return offset
            self._index(record.seq, offset, record.entry.error)
            last = record.seq
            offset += _FRAME.size + length

    def _frame(self, seq: int, entry: LogEntry) -> bytes:
        payload = self._encoder.encode(SpooledEntry(seq, entry))
        excess = len(payload) - self._config.max_record_bytes
        if excess > 0:
            cut = entry.output.encode()[: max(0, len(entry.output.encode()) - excess - 32)]
            short = msgspec.structs.replace(entry, output=cut.decode(errors="ignore") + " [cut]")
            payload = self._encoder.encode(SpooledEntry(seq, short))
        return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    def _write(self, frame: bytes, seq: int, error: bool) -> int:
        try:
            written = os.write(self._fd, frame)
        except OSError as exc:
            raise SpoolError(f"cannot append to log spool {self.path}: {exc}") from exc
        if written != len(frame):  # disk full mid-record: cut it off again
            os.truncate(self.path, self._size)
            raise SpoolError(f"short write to log spool {self.path}")
        self._index(seq, self._size, error)
        self._size += len(frame)
        self._next_seq = seq + 1
        self._dirty = True
        return seq

    def _index(self, seq: int, offset: int, error: bool) -> None:
        self._seqs.append(seq)
        self._offsets.append(offset)
        self._errors.append(error)

    def _make_room(self, needed: int) -> None:
        """Drop oldest non-error (then error) lines to 3/4 of the cap; add a marker line."""
        target = self._config.max_bytes * 3 // 4 - needed - 1024  # 1024: room for the marker
        ends = [*self._offsets[1:], self._size]
        sizes = [ends[i] - self._offsets[i] for i in range(len(self._seqs))]
        excess = self._size - target
        drop: set[int] = set()
        for want_error in (False, True):
            for i in range(len(self._seqs)):
                if excess <= 0:
                    break
                if bool(self._errors[i]) is want_error:
                    drop.add(i)
                    excess -= sizes[i]
        errors = sum(1 for i in drop if self._errors[i])
        self._rewrite(self.acked_seq, [i for i in range(len(self._seqs)) if i not in drop])
        self.dropped_total += len(drop)
        text = f"log spool full: dropped {len(drop)} older lines ({errors} of them errors)"
        logger.warning("%s", text)
        marker = LogEntry(time.time_ns() // 1_000_000, "", "agent", AGENT_COMMAND, text, True)
        self._write(self._frame(self._next_seq, marker), self._next_seq, True)

    def _rewrite(self, acked_seq: int, keep: list[int]) -> None:
        """Write header + kept records to a temp file, fsync, rename over the spool."""
        seqs, offsets, errors = array("q"), array("q"), bytearray()
        ends = [*self._offsets[1:], self._size]
        try:
            fd, tmp = tempfile.mkstemp(prefix=".spool-", dir=self.path.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(_HEADER.pack(_MAGIC, acked_seq))
                if keep:
                    with open(self.path, "rb") as src:
                        for i in keep:
                            src.seek(self._offsets[i])
                            seqs.append(self._seqs[i])
                            offsets.append(out.tell())
                            errors.append(self._errors[i])
                            out.write(src.read(ends[i] - self._offsets[i]))
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise SpoolError(f"cannot rewrite log spool {self.path}: {exc}") from exc
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._seqs, self._offsets, self._errors = seqs, offsets, errors
        self._size, self.acked_seq, self._dirty = size, acked_seq, False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecentLines:
    """Bounded ring of the most recent lines of non-debug tasks (served on a log request).

    Bounded both in lines and in bytes of output. :meth:`drain` hands the lines out once, so
    two log requests never send the same line twice (the original re-sent them, §10.2/10).
    """

    def __init__(self, max_lines: int = 1000, max_bytes: int = 256 << 10) -> None:
        self._lines: deque[LogEntry] = deque()
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, entry: LogEntry) -> None:
        """Remember ``entry``, forgetting the oldest lines beyond the bounds."""
        self._lines.append(entry)
        self._bytes += len(entry.output)
        while len(self._lines) > self._max_lines or self._bytes > self._max_bytes:
            self._bytes -= len(self._lines.popleft().output)

    def snapshot(self) -> list[LogEntry]:
        """The remembered lines, oldest first (kept)."""
        return list(self._lines)

    def drain(self) -> list[LogEntry]:
        """The remembered lines, oldest first; the ring is empty afterwards."""
        lines = list(self._lines)
        self._lines.clear()
        self._bytes = 0
        return lines
