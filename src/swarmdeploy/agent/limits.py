"""Resource limits of sandboxed commands: the task asks, the agent's ceilings decide (issue 9).

A task's ``sandbox.limits`` (signed into the manifest as :class:`Rlimits`) may only narrow
what the device's owner allows: every limit is at most the agent's ceiling
(``--max-processes``, ``--max-memory-bytes``, ``--max-file-size-bytes``, ``--max-cpu-s``,
``--max-open-files``). A task asking for more is **declined** naming the field (not clamped:
software that needs 2 GB should not start with 512 MB and fail later in the field); a limit
the task leaves unset gets the ceiling. The ceilings live in the agent's own options, never
in anything the manager sends, so a compromised manager cannot widen them.

Enforcement is by rlimits (``prlimit`` before the user switch, soft = hard); cgroup v2 is
not used yet (ADR 0007). What each one means:

* processes: ``RLIMIT_NPROC`` -- counts every process *and thread* of the sandbox uid on
  the device, so concurrent tasks (all uid 65534) share it;
* memory: ``RLIMIT_DATA`` -- heap and private writable mappings of each process (since
  Linux 4.7), not shared libraries or stack reservations (``RLIMIT_AS`` would fail
  programs that reserve much address space);
* file size: ``RLIMIT_FSIZE`` -- largest file a process may write (``SIGXFSZ``/``EFBIG``);
* CPU: ``RLIMIT_CPU`` -- CPU seconds per process (``SIGXCPU``, then ``SIGKILL``); default
  none, since run commands are long-lived services;
* open files: ``RLIMIT_NOFILE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from swarmdeploy.protocol.manifest import Rlimits

#: Enforcement mechanism reported to the manager.
MECHANISM = "rlimit"


@dataclass(frozen=True, slots=True)
class LimitCeilings:
    """The agent's ceilings (0: no ceiling, the system's limits apply)."""

    processes: int = 256
    memory_bytes: int = 512 << 20
    file_size_bytes: int = 1 << 30
    cpu_s: int = 0
    open_files: int = 0


#: (ceiling field, Rlimits field, descriptor field, agent option)
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("processes", "nproc", "processes", "--max-processes"),
    ("memory_bytes", "data_bytes", "memoryBytes", "--max-memory-bytes"),
    ("file_size_bytes", "fsize_bytes", "fileSizeBytes", "--max-file-size-bytes"),
    ("cpu_s", "cpu_s", "cpuSeconds", "--max-cpu-s"),
    ("open_files", "nofile", "openFiles", "--max-open-files"),
)


def limit_refusals(requested: Rlimits, ceilings: LimitCeilings) -> list[str]:
    """Every limit ``requested`` sets above its ceiling, each naming the descriptor field,
    the value, the ceiling and the agent option that sets it."""
    refused = []
    for ours, theirs, field, option in FIELDS:
        asked, ceiling = getattr(requested, theirs), getattr(ceilings, ours)
        if ceiling and asked > ceiling:
            refused.append(
                f"sandbox.limits.{field} {asked} (this device's ceiling is {ceiling}, {option})"
            )
    return refused


def effective_rlimits(requested: Rlimits, ceilings: LimitCeilings) -> Rlimits:
    """The limits applied: each requested one, else its ceiling (check
    :func:`limit_refusals` first; a request above the ceiling is lowered here too).
    ``address_space_bytes`` only narrows and passes through."""
    values: dict[str, int] = {}
    for ours, theirs, _, _ in FIELDS:
        asked, ceiling = getattr(requested, theirs), getattr(ceilings, ours)
        values[theirs] = min(asked, ceiling) if asked and ceiling else asked or ceiling
    return msgspec.structs.replace(requested, **values)


def ceilings_report(ceilings: LimitCeilings) -> dict[str, Any]:
    """What the agent reports in ``hello``/``health`` (``security.limits``): the mechanism
    and each ceiling by its descriptor name (0: none)."""
    report: dict[str, Any] = {"mechanism": MECHANISM, "cgroup": False}
    for ours, _, field, _ in FIELDS:
        report[field] = getattr(ceilings, ours)
    return report
