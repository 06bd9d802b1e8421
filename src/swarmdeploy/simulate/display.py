"""The live progress display of ``swarmdeploy simulate``.

:func:`snapshot` reads what the simulated agents did into a :class:`Snapshot`; a display
shows it: :class:`RichDisplay` (a table redrawn in place, when ``rich`` -- the ``cli`` extra --
is installed and the output is a terminal) or :class:`PlainDisplay` (one line when something
changed, at most every few seconds; fit for logs and pipes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TextIO

from swarmdeploy.simulate.agent import SimAgent
from swarmdeploy.simulate.state import Progress
from swarmdeploy.transport.base import LinkState

#: How many of the most recent tasks the display lists.
SHOWN_TASKS = 5


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the simulated fleet did so far."""

    elapsed_s: float
    agents: int
    registered: int
    connected: int
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> state -> count
    chunks: int = 0
    chunk_bytes: int = 0
    resent: int = 0
    simulated_failures: int = 0
    problems: int = 0

    def key(self) -> tuple[Any, ...]:
        """Everything but the elapsed time (to tell whether anything changed)."""
        tasks = tuple((t, tuple(sorted(c.items()))) for t, c in self.tasks.items())
        return (self.registered, self.connected, tasks, self.chunks, self.resent,
                self.simulated_failures, self.problems)  # fmt: skip


def snapshot(
    agents: Sequence[SimAgent], progress: Progress, registered: int, started: float
) -> Snapshot:
    """The fleet's state now (``started``: monotonic start of the run)."""
    tasks: dict[str, dict[str, int]] = {}
    connected = 0
    for agent in agents:
        if agent.transport is not None and agent.transport.state is LinkState.CONNECTED:
            connected += 1
        for task in agent.tasks.values():
            counts = tasks.setdefault(task.task_id, {})
            counts[task.state.value] = counts.get(task.state.value, 0) + 1
    shown = dict(list(tasks.items())[-SHOWN_TASKS:])
    c = progress.counts
    return Snapshot(
        elapsed_s=time.monotonic() - started,
        agents=len(agents),
        registered=registered,
        connected=connected,
        tasks=shown,
        chunks=c.get("chunks", 0),
        chunk_bytes=c.get("chunk_bytes", 0),
        resent=sum(v for k, v in c.items() if k.startswith("resent_")),
        simulated_failures=c.get("simulated_failures", 0),
        problems=len(progress.failures),
    )


def _states(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def plain_line(s: Snapshot) -> str:
    """One line for :class:`PlainDisplay`."""
    head = (f"[{s.elapsed_s:7.1f} s] agents {s.registered}/{s.agents} registered,"
            f" {s.connected} connected; chunks {s.chunks} ({s.chunk_bytes / 1e6:.1f} MB),"
            f" re-sent {s.resent}; simulated failures {s.simulated_failures};"
            f" problems {s.problems}")  # fmt: skip
    tasks = "".join(f"; task {t}: {_states(c)}" for t, c in s.tasks.items())
    return head + tasks


class Display(Protocol):
    """Shows snapshots; a context manager (the rich display owns the terminal meanwhile)."""

    def update(self, s: Snapshot) -> None:
        """Show ``s`` (a display may skip it)."""

    def __enter__(self) -> Display: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class PlainDisplay:
    """A line per change, at most every ``every_s`` seconds, and at least every
    ``quiet_s`` seconds while nothing changes."""

    def __init__(self, out: TextIO, every_s: float = 2.0, quiet_s: float = 30.0) -> None:
        self._out, self._every_s, self._quiet_s = out, every_s, quiet_s
        self._last_key: tuple[Any, ...] | None = None
        self._last_at = -float("inf")

    def update(self, s: Snapshot) -> None:
        """Print ``s`` when due (see the class docstring)."""
        changed = s.key() != self._last_key
        since = s.elapsed_s - self._last_at
        if (changed and since >= self._every_s) or since >= self._quiet_s:
            print(plain_line(s), file=self._out, flush=True)
            self._last_key, self._last_at = s.key(), s.elapsed_s

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RichDisplay:
    """A table redrawn in place with :class:`rich.live.Live`."""

    def __init__(self) -> None:
        from rich.live import Live

        self._live = Live(auto_refresh=False, transient=False)

    def update(self, s: Snapshot) -> None:
        """Redraw the table with ``s``."""
        from rich.table import Table

        table = Table(title=f"swarmdeploy simulate -- {s.elapsed_s:.0f} s", title_justify="left")
        table.add_column("what")
        table.add_column("now", overflow="fold")
        table.add_row("agents", f"{s.registered}/{s.agents} registered, {s.connected} connected")
        table.add_row("transfer", f"{s.chunks} chunks, {s.chunk_bytes / 1e6:.1f} MB")
        table.add_row("re-sent messages", str(s.resent))
        table.add_row("simulated failures", str(s.simulated_failures))
        table.add_row("problems", str(s.problems))
        for task_id, counts in s.tasks.items():
            table.add_row(f"task {task_id}", _states(counts))
        self._live.update(table, refresh=True)

    def __enter__(self) -> RichDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()


def make_display(plain: bool) -> Display:
    """:class:`RichDisplay` unless ``plain``, stdout is not a terminal or ``rich`` is not
    installed; else :class:`PlainDisplay` on stdout."""
    if not plain and sys.stdout.isatty():
        try:
            import rich  # noqa: F401
        except ModuleNotFoundError:
            pass
        else:
            return RichDisplay()
    return PlainDisplay(sys.stdout)
