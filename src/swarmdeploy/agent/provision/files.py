"""Writing, showing and removing :class:`~.layout.FileSpec` files below a root directory.

Files are written atomically (a temporary file in the same directory, renamed into place)
with their final mode from the start, so a secret is never readable by others, and a
half-written unit never exists. Directories that must be created get mode 0755 (``/etc``
layout); the data dir gets its own mode from :func:`make_dir`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from swarmdeploy.agent.provision.layout import FileSpec, LayoutError


def below(root: Path, path: PurePosixPath) -> Path:
    """``path`` (absolute on the device) inside ``root``; LayoutError for ``..``."""
    if not path.is_absolute() or ".." in path.parts:
        raise LayoutError(f"{path} is not an absolute, normalised path")
    return root / path.relative_to("/")


def _inside(root: Path, directory: Path) -> None:
    """LayoutError unless ``directory`` resolves below ``root``: a symbolic link in a mounted
    image (``/etc -> /host/etc``) must not lead the writes out of it. Checked on the deepest
    part that exists, before anything is created."""
    existing = directory
    while not existing.exists() and not existing.is_symlink() and existing != root:
        existing = existing.parent
    real_root, real = root.resolve(), existing.resolve()
    if real != real_root and real_root not in real.parents:
        raise LayoutError(f"{existing} leads out of {root} through a symbolic link ({real})")


def _make_parents(root: Path, target: Path) -> None:
    _inside(root, target.parent)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)


def describe(specs: Iterable[FileSpec]) -> str:
    """The ``--dry-run`` text: every file with its mode and content (links with target)."""
    parts = []
    for spec in specs:
        if spec.link_to is not None:
            parts.append(f"--- {spec.path} -> {spec.link_to} (symbolic link)\n")
            continue
        parts.append(f"--- {spec.path} (mode {spec.mode:04o}, {len(spec.content)} bytes)\n")
        text = spec.content.decode("utf-8", "replace")
        parts.append(text if text.endswith("\n") else text + "\n")
    return "".join(parts)


def write(root: Path, spec: FileSpec) -> Path:
    """Write one file (or link) below ``root``, replacing what is there; return its path."""
    target = below(root, spec.path)
    _make_parents(root, target)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    if spec.link_to is not None:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(spec.link_to)
        tmp.replace(target)
        return target
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, spec.mode)
    try:
        os.fchmod(fd, spec.mode)  # the umask may have taken bits away
        view = memoryview(spec.content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(target)
    return target


def make_dir(root: Path, path: PurePosixPath, mode: int) -> Path:
    """Create a directory below ``root`` (parents 0755) and set ``mode`` on it."""
    target = below(root, path)
    _make_parents(root, target)
    _inside(root, target)
    target.mkdir(mode=mode, exist_ok=True)
    target.chmod(mode)
    return target


def remove(root: Path, path: PurePosixPath) -> bool:
    """Remove a file or link below ``root``; True if there was one."""
    target = below(root, path)
    if not target.is_symlink() and not target.exists():
        return False
    target.unlink()
    return True


def remove_tree(root: Path, path: PurePosixPath) -> bool:
    """Remove a directory tree below ``root`` (links are not followed); True if it existed."""
    target = below(root, path)
    if target.is_symlink():
        target.unlink()
        return True
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True


def remove_empty_dir(root: Path, path: PurePosixPath) -> None:
    """Remove a directory below ``root`` if it is empty (else leave it)."""
    target = below(root, path)
    try:
        target.rmdir()
    except OSError:
        pass
