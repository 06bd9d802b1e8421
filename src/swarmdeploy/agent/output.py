"""Line-wise capture of a command's output with a cap per line.

The original agent used Go's ``bufio.Scanner``, which stopped reading at lines over 64 KiB and
could then block the pipe (cpswarm-original.md §10.2 item 11). Here a line longer than
``max_line_bytes`` is delivered in pieces; every piece but the last ends with
:data:`SPLIT_MARKER`. Nothing is ever held back beyond one capped line per stream, so the reader
keeps draining the pipe whatever the command writes.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: Appended to every piece of a line that was longer than the cap, except its last piece.
SPLIT_MARKER = " [line split]"
#: Default cap of one delivered line in bytes (before decoding).
DEFAULT_MAX_LINE_BYTES = 16 * 1024


class Stream(enum.StrEnum):
    """Which pipe a line came from."""

    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line of output: ``text`` has no trailing newline; ``time_ms`` is epoch milliseconds."""

    command: str
    stream: Stream
    text: str
    time_ms: int

    @property
    def error(self) -> bool:
        """Whether the line is an error line (stderr), as in the original tool."""
        return self.stream is Stream.STDERR


#: Receives lines as they come. It must not block: it runs on the event loop.
LineSink = Callable[[OutputLine], None]


def now_ms() -> int:
    """Current wall-clock time in epoch milliseconds (the unit used on the wire)."""
    return time.time_ns() // 1_000_000


class LineSplitter:
    """Turns a byte stream into :class:`OutputLine` objects delivered to a sink.

    Invariant: the internal buffer never holds more than ``max_line_bytes`` bytes after
    :meth:`feed` returns. ``\\r\\n`` endings are normalised; invalid UTF-8 is replaced.
    """

    def __init__(self, command: str, stream: Stream, sink: LineSink, max_line_bytes: int) -> None:
        if max_line_bytes < 4:
            raise ValueError("max_line_bytes must be at least 4")
        self._command = command
        self._stream = stream
        self._sink = sink
        self._max = max_line_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        """Add bytes read from the pipe; deliver every complete (or over-long) line."""
        self._buf += data
        start = 0
        while True:
            newline = self._buf.find(b"\n", start)
            end = len(self._buf) if newline == -1 else newline
            if end - start > self._max:
                cut = self._cut_point(start)
                self._emit(bytes(self._buf[start:cut]), split=True)
                start = cut
                continue
            if newline == -1:
                break
            self._emit(bytes(self._buf[start:newline]), split=False)
            start = newline + 1
        del self._buf[:start]

    def close(self) -> None:
        """Deliver a last line that had no trailing newline (called at end of stream)."""
        if self._buf:
            self._emit(bytes(self._buf), split=False)
            self._buf.clear()

    def _cut_point(self, start: int) -> int:
        # Cut at a UTF-8 character boundary: back up over continuation bytes (at most 3).
        cut = start + self._max
        while cut > start + self._max - 3 and cut < len(self._buf) and self._buf[cut] >> 6 == 2:
            cut -= 1
        return cut

    def _emit(self, raw: bytes, *, split: bool) -> None:
        if raw.endswith(b"\r") and not split:
            raw = raw[:-1]
        text = raw.decode("utf-8", errors="replace")
        if split:
            text += SPLIT_MARKER
        line = OutputLine(self._command, self._stream, text, now_ms())
        try:
            self._sink(line)
        except Exception:  # a faulty sink must not stop the pipe from being drained
            logger.exception("output sink failed on a line of %r", self._command)
