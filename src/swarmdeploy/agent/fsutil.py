"""Small file-system helpers for crash-safe writes.

They avoid :mod:`tempfile`, :mod:`shutil` and :mod:`secrets` on purpose: those pull in
``hashlib``, ``bz2`` and ``lzma`` and cost about 1.5 MB of resident memory on the device.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

#: The data dir's :class:`DiskReserve` file.
RESERVE_FILE = "reserve.bin"
#: errno values that mean "no room left" (disk full, or the user's quota reached).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or the OS error it wraps) says the disk is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


class DiskReserve:
    """A file of ``size_bytes`` the agent keeps allocated in its data dir, so that its own
    small writes (state, stage markers) find room when a deployed command filled the disk
    (docs/reliability.md, "Disk full").

    A writer that hits ``ENOSPC`` calls :meth:`release` and tries once more; the daemon calls
    :meth:`restore` periodically, which allocates the file again once there is room.
    """

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes

    @property
    def held(self) -> bool:
        """Whether the reserve is allocated right now."""
        try:
            return os.stat(self.path).st_size >= self.size_bytes
        except OSError:
            return False

    def restore(self) -> bool:
        """Allocate the reserve if it is not; False if there is no room for it (yet)."""
        if self.size_bytes <= 0 or self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size_bytes)
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            return False
        return True

    def release(self) -> bool:
        """Free the reserve; False if it was not held (nothing was freed)."""
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True


def random_suffix() -> str:
    """12 random hex characters (for temporary names, not for secrets)."""
    return os.urandom(6).hex()


def create_temp_file(directory: Path, prefix: str, mode: int = 0o600) -> tuple[int, Path]:
    """Create a new file ``directory/prefix<random>`` exclusively; return (fd, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        path = directory / f"{prefix}{random_suffix()}"
        try:
            return os.open(path, flags, mode), path
        except FileExistsError:
            continue


def create_temp_dir(directory: Path, prefix: str) -> Path:
    """Create a new directory ``directory/prefix<random>`` with mode 0700; return it."""
    while True:
        path = directory / f"{prefix}{random_suffix()}"
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename in it survives power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, mode: int = 0o600, reserve: DiskReserve | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically: temp file, fsync, rename, fsync directory.

    After a crash ``path`` holds either the old or the new content, never a mix. If the disk
    is full and a ``reserve`` is held, it is freed and the write tried once more.
    """
    try:
        _atomic_write(path, data, mode)
    except OSError as exc:
        if reserve is None or exc.errno not in NO_SPACE or not reserve.release():
            raise
        _atomic_write(path, data, mode)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = create_temp_file(path.parent, f".{path.name}.tmp-", mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything below it, never following links; ignore errors."""
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return
    if is_dir:
        with contextlib.suppress(OSError):
            for entry in list(os.scandir(path)):
                remove_tree(Path(entry.path))
        with contextlib.suppress(OSError):
            path.rmdir()
    else:
        with contextlib.suppress(OSError):
            path.unlink()
