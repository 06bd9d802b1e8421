"""Assessing a task announcement against this device: architecture, tags, size, disk.

Seed 003 ("Task Processor": "evaluates task announcements for compatibility with the hosting
target and feasibility of processing and installing them without exhausting the system
resources") and seed 000 (check disk space before fetching). The original compared the size
with half the total memory and never looked at the disk (cpswarm-original.md §4.5).

The disk rule (docs/protocol.md §6.3): free space of the data dir's file system, minus
``safety_margin_bytes``, must hold the payload plus its unpacked size -- the announced
``unpacked_bytes``, or ``payload_bytes * (unpack_factor - 1)`` when the estimate is unknown --
and the disk must not be low. ``max_data_bytes`` optionally caps what the data dir may hold
in total, whatever the file system has; tests use it instead of filling the real disk,
operators as a quota.
Checks never raise: they return an :class:`Assessment` whose decline carries a stable ``code``
and a human reason.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from swarmdeploy.agent.fsutil import RESERVE_FILE

#: Spellings of the same machine architecture (Debian/Docker names -> ``uname -m``).
ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armv8": "aarch64",
    "armhf": "armv7l",
    "armv7": "armv7l",
    "arm": "armv7l",
    "i686": "i386",
    "x86": "i386",
}


def normalize_arch(name: str) -> str:
    """Canonical (``uname -m`` style) name of an architecture, case-insensitive."""
    lowered = name.strip().lower()
    return ARCH_ALIASES.get(lowered, lowered)


def available_memory() -> int:
    """Memory available to new work, as the kernel estimates it (``MemAvailable``)."""
    from swarmdeploy.agent.health import memory_bytes

    return memory_bytes()[1]


def machine_arch() -> str:
    """This device's architecture, normalised."""
    return normalize_arch(platform.machine())


@dataclass(frozen=True, slots=True)
class DiskPolicy:
    """How much disk a task may take and when the disk counts as low."""

    safety_margin_bytes: int = 256 << 20
    unpack_factor: float = 3.0
    max_data_bytes: int | None = None
    max_payload_bytes: int | None = None
    low_disk_bytes: int = 128 << 20


@dataclass(frozen=True, slots=True)
class Requirements:
    """What an announcement asks of the device (empty collections: no constraint;
    ``unpacked_bytes`` 0: unknown)."""

    payload_bytes: int
    unpacked_bytes: int = 0
    arch: Collection[str] = ()
    tags: Collection[str] = ()
    #: The task's ``deploy.requires`` minima (0: none).
    min_free_disk_bytes: int = 0
    min_free_memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Assessment:
    """Accept, or decline with a stable ``code`` and a human ``reason``."""

    accepted: bool
    code: str | None = None
    reason: str | None = None


ACCEPT = Assessment(True)


def decline(code: str, reason: str) -> Assessment:
    """A declining assessment."""
    return Assessment(False, code, reason)


def human_bytes(count: int) -> str:
    """``52 MB``-style size for reasons shown to operators (decimal units)."""
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def data_dir_usage(data_dir: Path) -> int:
    """Apparent size in bytes of every regular file below ``data_dir`` (links not followed),
    leaving out the agent's disk reserve (:data:`~swarmdeploy.agent.fsutil.RESERVE_FILE`):
    it is free space held back for the agent, not data."""
    total = 0
    reserve = os.path.join(data_dir, RESERVE_FILE)
    stack = [str(data_dir)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and entry.path != reserve:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


#: Defaults of the disk margin and the low-disk threshold: a share of the data dir's file
#: system, capped (docs/reliability.md "Disk full").
MARGIN_SHARE, MARGIN_CAP_BYTES = 0.10, 256 << 20
LOW_DISK_SHARE, LOW_DISK_CAP_BYTES = 0.05, 128 << 20


def scaled_disk_bytes(data_dir: Path, share: float, cap_bytes: int) -> int:
    """``share`` of the size of the file system holding ``data_dir``, at most ``cap_bytes``
    (``cap_bytes`` if the size cannot be read)."""
    try:
        fs = os.statvfs(data_dir)
    except OSError:
        return cap_bytes
    return min(cap_bytes, int(fs.f_blocks * fs.f_frsize * share))


def free_bytes(data_dir: Path, policy: DiskPolicy) -> int:
    """Bytes the agent may still write below ``data_dir`` (file system free space, or what is
    left of ``max_data_bytes`` if that is smaller)."""
    fs = os.statvfs(data_dir)
    free = fs.f_bavail * fs.f_frsize  # what an unprivileged writer may still use
    if policy.max_data_bytes is not None:
        free = min(free, policy.max_data_bytes - data_dir_usage(data_dir))
    return max(free, 0)


def disk_low(data_dir: Path, policy: DiskPolicy) -> bool:
    """Whether free space is below ``low_disk_bytes`` (seed 000: pause fetching, tell the
    manager)."""
    return free_bytes(data_dir, policy) < policy.low_disk_bytes


def assess(
    req: Requirements,
    *,
    data_dir: Path,
    policy: DiskPolicy,
    arch: str | None = None,
    tags: Collection[str] = (),
) -> Assessment:
    """Decide whether this device takes a task with requirements ``req``.

    Order: architecture, tags, size, low disk, disk space. ``arch`` defaults to this
    machine's.
    """
    here = normalize_arch(arch) if arch is not None else machine_arch()
    wanted = {normalize_arch(a) for a in req.arch}
    if wanted and here not in wanted:
        return decline(
            "incompatible_arch",
            f"task requires architecture {', '.join(sorted(wanted))} (deploy.requires.arch);"
            f" this device is {here}",
        )
    missing = sorted(set(req.tags) - set(tags))
    if missing:
        return decline("missing_tags", f"device lacks required tags: {', '.join(missing)}")
    if req.payload_bytes < 0 or req.unpacked_bytes < 0:
        return decline("invalid_size", "announced size is negative")
    if policy.max_payload_bytes is not None and req.payload_bytes > policy.max_payload_bytes:
        return decline(
            "too_large",
            f"payload of {human_bytes(req.payload_bytes)} exceeds the limit of"
            f" {human_bytes(policy.max_payload_bytes)}",
        )
    free = free_bytes(data_dir, policy)
    if free < policy.low_disk_bytes:
        return decline("disk_low", f"disk is low: {human_bytes(free)} free")
    if free < req.min_free_disk_bytes:
        return decline(
            "insufficient_disk",
            f"task requires {human_bytes(req.min_free_disk_bytes)} free disk"
            f" (deploy.requires.minFreeDiskMB); {human_bytes(free)} free",
        )
    if req.min_free_memory_bytes:
        available = available_memory()
        if available < req.min_free_memory_bytes:
            return decline(
                "insufficient_memory",
                f"task requires {human_bytes(req.min_free_memory_bytes)} available memory"
                f" (deploy.requires.minFreeMemoryMB); {human_bytes(available)} available",
            )
    unpacked = req.unpacked_bytes or int(req.payload_bytes * (policy.unpack_factor - 1))
    needed = req.payload_bytes + unpacked + policy.safety_margin_bytes
    if free < needed:
        return decline(
            "insufficient_disk",
            f"not enough disk: need {human_bytes(needed)}, {human_bytes(free)} free",
        )
    return ACCEPT
