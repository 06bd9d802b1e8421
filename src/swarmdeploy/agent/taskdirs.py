"""Ownership and fingerprint of a task's directories (issue 5, ADR 0004): :func:`hand_over`
gives the writable dirs to the sandbox user, :func:`seal` makes an installed tree read-only
for it, and :func:`tree_digest` fingerprints the tree so that changes are detected before
every start (``agent/confine.py`` uses them; ``agent/sandbox.py`` runs the commands).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from swarmdeploy.protocol.manifest import SandboxPolicy

if TYPE_CHECKING:
    from swarmdeploy.agent.sandbox import SandboxConfig

__all__ = ["hand_over", "seal", "tree_digest"]


def hand_over(paths: Iterable[Path], policy: SandboxPolicy, config: SandboxConfig) -> None:
    """Give ``paths`` (recursively) to the sandbox uid/gid so its commands can write there.
    Does nothing for an agent that is not root.

    Walks by directory file descriptor and never follows a symlink, so a sandboxed process
    that swaps a directory for a link to ``/etc`` meanwhile cannot redirect the chown.
    """
    if not config.privileged:
        return
    for top in paths:
        os.chown(top, policy.uid, policy.gid, follow_symlinks=False)
        for _, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
            for name in (*dirs, *files):
                os.chown(name, policy.uid, policy.gid, dir_fd=dir_fd, follow_symlinks=False)


def seal(top: Path, policy: SandboxPolicy, config: SandboxConfig) -> None:
    """Make an installed tree read-only for the sandbox user (root agents only): every entry
    becomes owned by root with the sandbox gid as group, group permissions are the owner's
    without write, others get nothing, and set-id and sticky bits are cleared. Run commands
    can then read and execute the install dir but not change it -- even without bubblewrap.

    Call it when no sandboxed command runs (after the install stage): entries are
    inspected without following links, then changed by name.
    """
    if not config.privileged:
        return
    _seal_entry(str(top), None, policy.gid)
    for _, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
        for name in (*dirs, *files):
            _seal_entry(name, dir_fd, policy.gid)


def _seal_entry(name: str, dir_fd: int | None, gid: int) -> None:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    os.chown(name, 0, gid, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        return  # a link has no permissions of its own
    owner = info.st_mode & stat.S_IRWXU
    group = (owner >> 3) & (stat.S_IRGRP | stat.S_IXGRP)
    os.chmod(name, owner | group, dir_fd=dir_fd)


def tree_digest(root: Path) -> str:
    """SHA-256 over a directory tree: every entry's relative path, type, mode, owner and --
    for regular files -- content; symlinks by their target, never followed; FIFOs, sockets
    and devices by type only (never opened). Recorded after install and compared before
    every start, it detects installed files modified since (issue 5, "tampered install
    dir"). The root's own mode and owner count too; a missing root raises OSError. Compute
    it while no sandboxed command runs."""
    digest = hashlib.sha256()
    top = os.lstat(root)
    if not stat.S_ISDIR(top.st_mode):
        raise NotADirectoryError(f"{root} is not a directory")
    digest.update(b".\0%o\0%d:%d\0" % (top.st_mode, top.st_uid, top.st_gid))
    for parent, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted((*dirs, *files)):
            path = os.path.join(parent, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root).encode("utf-8", "surrogateescape")
            digest.update(b"%s\0%o\0%d:%d\0" % (rel, info.st_mode, info.st_uid, info.st_gid))
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode("utf-8", "surrogateescape") + b"\0")
            elif stat.S_ISREG(info.st_mode):
                digest.update(_file_digest(path) + b"\0")
    return digest.hexdigest()


def _file_digest(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b"not a regular file"
        return hashlib.file_digest(fh, "sha256").digest()
