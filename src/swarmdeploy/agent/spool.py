"""The response collector's on-disk log spool and the ring of recent non-debug lines.

docs/protocol.md §6.7: every line the agent sends carries a per-agent ``seq`` (1, 2, 3, ...,
no gaps, never reused, surviving restarts); the manager stores a line only if its ``seq`` is
one more than the highest it holds and acknowledges with ``log_ack{upto_seq}``;
:meth:`LogSpool.ack` then drops those lines. Gaps would stall the manager, so numbers are
positional: the n-th record of the file has ``seq = first_seq + n``.

A number is *fixed* once :meth:`LogSpool.pending` handed the line out (``fixed_upto`` is
persisted before it returns); the manager may store it, so it never changes. Lines not handed
out yet may be renumbered: when the size cap drops some of them, or when an acknowledgement
names a ``seq`` beyond what was handed out (a spool restored from a backup or lost: numbering
then continues after the manager's ``upto_seq``, as §6.7 asks). Since unfixed lines were never
sent, nobody can tell.

File format (``spool.bin``)::

    header  b"SDSPOOL3" + first_seq (u64 BE) + fixed_upto (u64 BE)
    record  b"\xa5SDr" + length (u32 BE) + crc32(payload) (u32 BE) + payload (msgpack LogEntry)

Every record starts with the same 4-byte marker, so one damaged record in the middle costs
only itself: opening resynchronises at the next marker that starts a valid record (length,
CRC, payload), drops the damaged bytes, and spools one ``$agent`` error line naming the place
and size of the damage -- the gap is visible, and every intact line after it is kept. The
lines after the damage that had been handed out lose their fixed numbers (they are sent again
under new ones: possibly a duplicate, never a loss). A ``SDSPOOL2`` file (records without the
marker, written by older agents) is read as it is and converted at its next rewrite; in it a
damaged record still ends the readable part, as it did.

Durability (fsync policy): :meth:`LogSpool.append` is one ``pwrite()``: the line survives an
agent crash once it returns, and survives power loss after :meth:`LogSpool.sync` (or
``append(durable=True)``, used for errors and stage markers). :meth:`LogSpool.pending` syncs
before handing lines out, so a torn tail found on reopen (power loss) only ever holds unsent
lines, which are dropped. Compaction writes a temporary file, fsyncs it and renames it over
the spool: a crash leaves the old or the new file.

Size cap: the file never grows past ``max_bytes``. When full, the oldest unsent non-error
lines are dropped first (then unsent error lines) down to 3/4 of the cap, and a marker line
(``error=True``) says how many. Handed-out lines are bounded to a quarter of the cap.

All methods do blocking file I/O and are not thread-safe; call them from one thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import struct
import time
import zlib
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from swarmdeploy.agent.errors import SpoolError
from swarmdeploy.agent.fsutil import create_temp_file, fsync_dir

logger = logging.getLogger(__name__)

_MAGIC = b"SDSPOOL3"
_MAGIC_V2 = b"SDSPOOL2"  # older agents: records without the marker
_HEADER = struct.Struct(">8sQQ")
_FIXED_AT = 16  # offset of fixed_upto in the header
_SYNC = b"\xa5SDr"  # starts every record (resynchronisation after damage)
_FRAME = struct.Struct(">4sII")
_FRAME_V2 = struct.Struct(">II")
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


class SpooledEntry(msgspec.Struct, frozen=True):
    """A log line with its ``seq``, as handed out for sending."""

    seq: int
    entry: LogEntry


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """Limits of the spool."""

    max_bytes: int = 8 << 20
    max_record_bytes: int = 64 << 10


class LogSpool:
    """Append-only, positionally numbered log spool. See the module docstring."""

    def __init__(self, path: Path, config: SpoolConfig | None = None) -> None:
        self.path = path
        self._config = config or SpoolConfig()
        if self._config.max_bytes < 8 * self._config.max_record_bytes:
            raise ValueError("max_bytes must hold at least eight maximal records")
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(LogEntry)
        self._offsets = array("q")
        self._errors = bytearray()
        self._size = _HEADER.size
        self._first_seq = 1
        self._fixed_upto = 0
        self._dirty = False
        self._fd = -1
        self._v2 = False  # the file is SDSPOOL2 (until its next rewrite)
        self.dropped_total = 0
        try:
            self._open()
        except OSError as exc:
            raise SpoolError(f"cannot open log spool {path}: {exc}") from exc

    @property
    def acked_seq(self) -> int:
        """Highest ``seq`` acknowledged by the manager (0: none yet)."""
        return self._first_seq - 1

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next appended line will have (if nothing before it is dropped)."""
        return self._first_seq + len(self._offsets)

    @property
    def size_bytes(self) -> int:
        """Current size of the spool file."""
        return self._size

    def __len__(self) -> int:
        return len(self._offsets)

    def append(self, entry: LogEntry, *, durable: bool = False) -> None:
        """Spool ``entry``; ``durable`` fsyncs before returning."""
        frame = self._frame(entry)
        if self._size + len(frame) > self._config.max_bytes:
            self._make_room(len(frame))
        self._write(frame, entry.error)
        if durable:
            self.sync()

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

        The lines are durable and their numbers fixed before this returns. At most a quarter
        of ``max_bytes`` is ever handed out without acknowledgement.
        """
        self.sync()
        start = max(after_seq, self.acked_seq) - self._first_seq + 1
        budget = self._config.max_bytes // 4
        out: list[SpooledEntry] = []
        with open(self.path, "rb") as fh:
            for i in range(start, min(start + limit, len(self._offsets))):
                if self._offsets[i] + self._record_size(i) - self._offsets[0] > budget:
                    break  # the first record always fits: max_record_bytes <= max_bytes / 8
                fh.seek(self._offsets[i])
                length = self._read_frame(fh)[0]
                out.append(SpooledEntry(self._first_seq + i, self._decoder.decode(fh.read(length))))
        if out and out[-1].seq > self._fixed_upto:
            self._set_fixed(out[-1].seq)
        return out

    def ack(self, upto_seq: int) -> int:
        """The manager stored every line up to ``upto_seq``: drop those; return how many.

        If ``upto_seq`` lies beyond the lines handed out, the unsent lines are renumbered to
        follow it (docs/protocol.md §6.7, spool restored or lost).
        """
        if upto_seq <= self.acked_seq:
            return 0
        fixed = self._fixed_upto - self._first_seq + 1  # handed-out lines in the file
        dropped = min(upto_seq - self.acked_seq, fixed)
        fixed_upto = max(self._fixed_upto, upto_seq)
        try:
            self._rewrite(upto_seq + 1, fixed_upto, range(dropped, len(self)))
        except SpoolError as exc:
            # No room for the compacted copy (disk full): forget the acked lines in memory
            # only, so sending goes on. The file keeps them until a later rewrite; if the
            # agent restarts first, the manager's welcome acks them again (§6.7).
            logger.warning("log spool: acknowledged lines kept on disk for now: %s", exc)
            del self._offsets[:dropped]
            del self._errors[:dropped]
            self._first_seq, self._fixed_upto = upto_seq + 1, fixed_upto
        return dropped

    def close(self) -> None:
        """Sync and close the file."""
        self.sync()
        os.close(self._fd)
        self._fd = -1

    # ------------------------------------------------------------------ internals

    def _open(self) -> None:
        if self.path.exists() and not self._valid_header():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
            logger.error("log spool %s is damaged; moved aside to %s", self.path, aside)
            os.replace(self.path, aside)
        if not self.path.exists():
            # Numbering starts at 1; the manager's welcome re-aligns it if the spool was lost.
            self._rewrite(1, 0, range(0))
            return
        with open(self.path, "rb") as fh:
            magic, self._first_seq, fixed = _HEADER.unpack(fh.read(_HEADER.size))
            self._v2 = magic == _MAGIC_V2
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                good, damaged = self._scan(view)
        if good < os.path.getsize(self.path):
            logger.warning("log spool %s: dropping a torn tail at byte %d", self.path, good)
            os.truncate(self.path, good)
        self._size = good
        # Lines handed out but lost with a damaged tail cannot be fixed any more.
        self._fixed_upto = max(min(fixed, self.next_seq - 1), self.acked_seq)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        if damaged:
            self._after_damage(damaged)

    def _valid_header(self) -> bool:
        with open(self.path, "rb") as fh:
            head = fh.read(_HEADER.size)
        return len(head) == _HEADER.size and head[:8] in (_MAGIC, _MAGIC_V2)

    def _scan(self, view: mmap.mmap) -> tuple[int, list[tuple[int, int, int]]]:
        """Index the records; return the offset after the last valid one and the damaged
        ranges skipped on the way as ``(index of the next record, start, end)``."""
        offset, end = _HEADER.size, len(view)
        damaged: list[tuple[int, int, int]] = []
        while offset < end:
            record = self._parse(view, offset)
            if record is None:
                found = -1 if self._v2 else view.find(_SYNC, offset + 1)
                while found != -1 and self._parse(view, found) is None:
                    found = view.find(_SYNC, found + 1)
                if found == -1:
                    return offset, damaged  # a torn tail: nothing valid after it
                damaged.append((len(self._offsets), offset, found))
                offset = found
                continue
            size, error = record
            self._offsets.append(offset)
            self._errors.append(error)
            offset += size
        return offset, damaged

    def _parse(self, view: mmap.mmap, offset: int) -> tuple[int, bool] | None:
        """``(record size, error flag)`` of a valid record at ``offset``; None if there is
        none."""
        frame = _FRAME_V2 if self._v2 else _FRAME
        head = view[offset : offset + frame.size]
        if len(head) < frame.size:
            return None
        if self._v2:
            length, crc = _FRAME_V2.unpack(head)
        else:
            sync, length, crc = _FRAME.unpack(head)
            if sync != _SYNC:
                return None
        if length > self._config.max_record_bytes:
            return None
        payload = view[offset + frame.size : offset + frame.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        try:
            entry = self._decoder.decode(payload)
        except msgspec.DecodeError:
            return None
        return frame.size + length, entry.error

    def _after_damage(self, damaged: list[tuple[int, int, int]]) -> None:
        """Unfix the lines after the first damage (their numbers move), drop the damaged
        bytes and spool one marker line per damaged range (module docstring)."""
        first = self._first_seq + damaged[0][0] - 1  # the last line before the damage
        self._fixed_upto = max(min(self._fixed_upto, first), self.acked_seq)
        texts = []
        for index, start, end in damaged:
            after = self._first_seq + index - 1
            text = f"log spool damaged: {end - start} bytes unreadable after line {after}"
            logger.error("%s (%s)", text, self.path)
            texts.append(f"{text}; the lines in them are lost")
        try:
            self._rewrite(self._first_seq, self._fixed_upto, range(len(self)))
            for text in texts:
                marker = LogEntry(
                    time.time_ns() // 1_000_000, "", "agent", AGENT_COMMAND, text, True
                )
                self._write(self._frame(marker), True)
            self.sync()
        except SpoolError as exc:  # disk full: the damaged bytes stay skipped in memory
            logger.error("log spool %s: cannot record the damage: %s", self.path, exc)

    def _read_frame(self, fh: BinaryIO) -> tuple[int, int]:
        """``(length, crc)`` of the record whose frame starts at the file position."""
        if self._v2:
            length, crc = _FRAME_V2.unpack(fh.read(_FRAME_V2.size))
            return length, crc
        _, length, crc = _FRAME.unpack(fh.read(_FRAME.size))
        return length, crc

    def _record_size(self, i: int) -> int:
        end = self._offsets[i + 1] if i + 1 < len(self._offsets) else self._size
        return end - self._offsets[i]

    def _frame(self, entry: LogEntry) -> bytes:
        payload = self._encoder.encode(entry)
        excess = len(payload) - self._config.max_record_bytes
        if excess > 0:
            raw = entry.output.encode()
            cut = raw[: max(0, len(raw) - excess - 32)].decode(errors="ignore") + " [cut]"
            payload = self._encoder.encode(msgspec.structs.replace(entry, output=cut))
        if self._v2:
            return _FRAME_V2.pack(len(payload), zlib.crc32(payload)) + payload
        return _FRAME.pack(_SYNC, len(payload), zlib.crc32(payload)) + payload

    def _write(self, frame: bytes, error: bool) -> None:
        try:
            # pwrite at our own end offset, not O_APPEND: Linux ignores pwrite's offset on
            # O_APPEND files, and the header is updated in place (_set_fixed).
            written = os.pwrite(self._fd, frame, self._size)
        except OSError as exc:
            raise SpoolError(f"cannot append to log spool {self.path}: {exc}") from exc
        if written != len(frame):  # disk full mid-record: cut it off again
            os.truncate(self.path, self._size)
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            raise SpoolError(f"short write to log spool {self.path} (disk full)") from full
        self._offsets.append(self._size)
        self._errors.append(error)
        self._size += len(frame)
        self._dirty = True

    def _set_fixed(self, seq: int) -> None:
        try:
            os.pwrite(self._fd, struct.pack(">Q", seq), _FIXED_AT)
            os.fsync(self._fd)
        except OSError as exc:
            raise SpoolError(f"cannot update log spool {self.path}: {exc}") from exc
        self._fixed_upto = seq

    def _make_room(self, needed: int) -> None:
        """Drop the oldest unsent non-error (then error) lines to 3/4 of the cap; add a marker."""
        target = self._config.max_bytes * 3 // 4 - needed - 1024  # 1024: room for the marker
        first_unsent = self._fixed_upto - self._first_seq + 1
        excess = self._size - target
        drop: set[int] = set()
        for want_error in (False, True):
            for i in range(first_unsent, len(self)):
                if excess <= 0:
                    break
                if bool(self._errors[i]) is want_error:
                    drop.add(i)
                    excess -= self._record_size(i)
        errors = sum(1 for i in drop if self._errors[i])
        keep = [i for i in range(len(self)) if i not in drop]
        self._rewrite(self._first_seq, self._fixed_upto, keep)
        self.dropped_total += len(drop)
        text = f"log spool full: dropped {len(drop)} older lines ({errors} of them errors)"
        logger.warning("%s", text)
        marker = LogEntry(time.time_ns() // 1_000_000, "", "agent", AGENT_COMMAND, text, True)
        self._write(self._frame(marker), True)

    def _rewrite(self, first_seq: int, fixed_upto: int, keep: range | list[int]) -> None:
        """Write header + kept records to a temp file, fsync, rename over the spool."""
        offsets, errors = array("q"), bytearray()
        tmp: Path | None = None
        try:
            fd, tmp = create_temp_file(self.path.parent, f".{self.path.name}.tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(_HEADER.pack(_MAGIC, first_seq, fixed_upto))
                if keep:
                    with open(self.path, "rb") as src:
                        for i in keep:  # frame by frame: converts SDSPOOL2, skips damage
                            src.seek(self._offsets[i])
                            length, crc = self._read_frame(src)
                            offsets.append(out.tell())
                            errors.append(self._errors[i])
                            out.write(_FRAME.pack(_SYNC, length, crc) + src.read(length))
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            if tmp is not None:  # a full disk must not also keep the partial copy
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise SpoolError(f"cannot rewrite log spool {self.path}: {exc}") from exc
        with contextlib.suppress(OSError):  # the new file is in place: carry on regardless
            fsync_dir(self.path.parent)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        self._offsets, self._errors, self._size = offsets, errors, size
        self._first_seq, self._fixed_upto, self._dirty = first_seq, fixed_upto, False
        self._v2 = False


class RecentLines:
    """Bounded ring of the most recent lines of non-debug tasks (served on a log request).

    Bounded both in lines and in bytes of output. :meth:`drain` hands the lines out once (the
    daemon moves them into the spool), so two log requests never send the same line twice
    (the original re-sent them, cpswarm-original.md §10.2 item 10).
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
