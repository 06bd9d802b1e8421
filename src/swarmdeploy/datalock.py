"""One process per data directory: an exclusive ``flock`` on ``DATA_DIR/.lock``, held for the
life of the process (the manager's and the agent's). A second manager or agent on the same
directory would fight over its state, keys and log spool; it is refused at start with one
line naming the process that holds the directory. Standard library only (the agent uses it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"


class DataDirInUse(Exception):
    """Another process holds the data directory."""


def lock_data_dir(data_dir: Path, who: str) -> int:
    """Take the data directory for this process (``who``, e.g. ``"swarmdeploy agent"``);
    returns the lock's file descriptor, which must stay open. Raises :class:`DataDirInUse`
    naming the holder, or ``OSError`` if the lock file cannot be opened."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise DataDirInUse(
            f"the data dir {data_dir} is in use by {holder}; stop it first, or give this one "
            "another --data-dir"
        ) from None
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{who} (pid {os.getpid()})\n".encode(), 0)
    return fd
