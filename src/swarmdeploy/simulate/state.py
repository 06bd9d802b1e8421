"""What the simulated agents of ``swarmdeploy simulate`` (and ``python -m bench fleet``)
share: their settings, the fleet's :class:`Progress` (counters and the events a caller waits
on) and the per-task record of one agent."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.protocol.manifest import TaskManifest
from swarmdeploy.protocol.states import FINAL_STATES, TargetState
from swarmdeploy.simulate.transfer import Transfer

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
    install_s: float = 0.0  # simulated time between ``installing`` and its outcome
    failure_rate: float = 0.0  # share of installs that end ``install_failed`` (0.0 .. 1.0)
    #: Seed of the failure draws (each agent's from ``seed`` and its id); None: random.
    seed: int | None = None
    transport: str = "zmq"  # or "http": the sealed HTTP long-poll link to ``manager_url``

    def __post_init__(self) -> None:
        if self.transport not in ("zmq", "http"):
            raise ValueError(f"transport must be zmq or http, not {self.transport!r}")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure rate {self.failure_rate} is not between 0.0 and 1.0")
        if self.install_s < 0:
            raise ValueError(f"install time {self.install_s} s is negative")


@dataclass
class Progress:
    """Counters of a simulated fleet and the events the benchmark waits on."""

    total: int
    welcomed: set[str] = field(default_factory=set)
    all_welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    configured: set[str] = field(default_factory=set)
    all_configured: asyncio.Event = field(default_factory=asyncio.Event)
    exited: dict[str, set[str]] = field(default_factory=dict)
    finals: dict[str, dict[str, TargetState]] = field(default_factory=dict)
    verified: dict[str, set[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    counts: dict[str, int] = field(default_factory=dict)
    _done: dict[str, asyncio.Event] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``what`` (chunks, bytes, resends, errors, ...)."""
        self.counts[what] = self.counts.get(what, 0) + n

    def done_event(self, task_id: str) -> asyncio.Event:
        """Set once every agent's final state (``exited``, ``install_failed``, ...) for
        ``task_id`` is acknowledged."""
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

    def note_final(self, task_id: str, target_id: str, state: TargetState) -> None:
        """The manager acknowledged the final ``state`` of ``target_id`` for ``task_id``."""
        assert state in FINAL_STATES, state
        if state is TargetState.EXITED:
            self.exited.setdefault(task_id, set()).add(target_id)
        done = self.finals.setdefault(task_id, {})
        done[target_id] = state
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
    install_due: float = 0.0  # monotonic time the simulated install ends (0: none running)
    attempt: int = 0  # the announcement's attempt (an operator's retry announces a higher one)


def now_ms() -> int:
    """Wall clock in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000
