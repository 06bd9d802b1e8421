"""Telling a full disk apart from other failures (docs/reliability.md, "Disk full").

A command that fills the disk usually fails with a message of its own (``dd: error writing
'fill.bin': No space left on device``) and a plain non-zero exit status; the task's reason
must still say what happened, so that the operator does not have to read the output.
"""

from __future__ import annotations

import os
from pathlib import Path

from swarmdeploy.agent.output import LineSink, OutputLine

#: What ``strerror(ENOSPC)`` says; the reason a task fails with when the disk is full.
NO_SPACE_TEXT = os.strerror(28)
#: Less free space than this after a failure counts as a full disk.
FULL_BELOW_BYTES = 64 << 10


def describe_os_error(exc: OSError) -> str:
    """A task reason for an OS error of the agent's own file work (``strerror: file``)."""
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no room left."""
    try:
        fs = os.statvfs(path)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < FULL_BELOW_BYTES


class NoSpaceWatch:
    """Wraps a line sink and notes whether any line said the disk is full."""

    def __init__(self, sink: LineSink) -> None:
        self._sink = sink
        self.seen = False

    def on_line(self, line: OutputLine) -> None:
        """Pass ``line`` on, noting a "No space left on device"."""
        if NO_SPACE_TEXT in line.text:
            self.seen = True
        self._sink(line)

    def explain(self, reason: str, data_dir: Path) -> str:
        """``reason`` with ``: No space left on device`` if the output or the data dir's
        free space says that the disk filled up."""
        if self.seen or disk_full(data_dir):
            return f"{reason}: {NO_SPACE_TEXT}"
        return reason
