"""What the simulated agents of ``python -m bench fleet`` share: their settings, the
fleet's :class:`Progress` (counters and the events the benchmark waits on) and the
per-task record of one agent."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from bench.fleet_transfer import Transfer
from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.protocol.manifest import TaskManifest
from swarmdeploy.protocol.states import TargetState

log = logging.getLogger(__name__)


class SimError(Exception):
    """A simulated agent could not register or the manager answered unexpectedly."""


@dataclass(frozen=True, slots=True)
class SimSettings:
    """What every simulated agent shares: where the manager is and how to behave."""

    manager_url: str
    anchors: AnchorSet  # parsed from the manager's ca.pem
    tags: tuple[str, ...]
    health_s: float = 30.0  # 0: no health reports
    resend_s: float = 10.0
    chunk_window: int = 4
    max_task_bytes: int = 1 << 30
    reconnect_ivl_s: float = 0.5
    reconnect_ivl_max_s: float = 5.0


@dataclass
class Progress:
    """Counters of a simulated fleet and the events the benchmark waits on."""

    total: int
    welcomed: set[str] = field(default_factory=set)
    all_welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    configured: set[str] = field(default_factory=set)
    all_configured: asyncio.Event = field(default_factory=asyncio.Event)
    exited: dict[str, set[str]] = field(default_factory=dict)
    verified: dict[str, set[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    counts: dict[str, int] = field(default_factory=dict)
    _done: dict[str, asyncio.Event] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``what`` (chunks, bytes, resends, errors, ...)."""
        self.counts[what] = self.counts.get(what, 0) + n

    def done_event(self, task_id: str) -> asyncio.Event:
        """Set once every agent's ``exited`` for ``task_id`` is acknowledged."""
        return self._done.setdefault(task_id, asyncio.Event())

    def note_welcome(self, target_id: str) -> None:
        """``target_id`` got its (first) ``welcome``."""
        self.welcomed.add(target_id)
        if len(self.welcomed) >= self.total:
            self.all_welcomed.set()

    def note_configured(self, target_id: str) -> None:
        """``target_id`` applied its first ``config`` (the last step of its first hello)."""
        self.configured.add(target_id)
        if len(self.configured) >= self.total:
            self.all_configured.set()

    def note_exited(self, task_id: str, target_id: str) -> None:
        """The manager acknowledged ``exited`` of ``target_id`` for ``task_id``."""
        done = self.exited.setdefault(task_id, set())
        done.add(target_id)
        if len(done) >= self.total:
            self.done_event(task_id).set()

    def fail(self, target_id: str, text: str) -> None:
        """Record a failure (the benchmark reports them and fails)."""
        log.warning("%s: %s", target_id, text)
        self.failures.append(f"{target_id}: {text}")
        self.failed.set()


@dataclass
class SimTask:
    """One task as a simulated agent holds it."""

    task_id: str
    kind: str
    state: TargetState
    manifest: TaskManifest | None = None
    transfer: Transfer | None = None
    fetch_sent: float = 0.0  # monotonic time of the last fetch_task (0: none outstanding)
    signed: tuple[bytes, bytes, bytes, int] | None = None  # manifest, signature, cert, seq
    reported: list[TargetState] = field(default_factory=list)


def now_ms() -> int:
    """Wall clock in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000
