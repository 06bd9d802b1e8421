"""Small file-system helpers for crash-safe writes.

They avoid :mod:`tempfile`, :mod:`shutil` and :mod:`secrets` on purpose: those pull in
``hashlib``, ``bz2`` and ``lzma`` and cost about 1.5 MB of resident memory on the device.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


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


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically: temp file, fsync, rename, fsync directory.

    After a crash ``path`` holds either the old or the new content, never a mix.
    """
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
