"""Following a deployment live (``tasks create --follow``, ``tasks watch``).

The follower subscribes to ``/events`` (``taskUpdated``/``taskDeleted`` of this task) before
it reads the task, so no change falls between the two; every batch of events, and every
``poll_s`` without one, reads ``GET /tasks/{id}`` again: the task document is the truth, the
events only say when to look. A dropped stream is reopened (:class:`EventStream`); a manager
without a usable stream is polled. It ends when no device is on its way any more (each one
final or running, :attr:`Progress.settled`), when the task's staged rollout halted (nothing
more happens until an operator acts) or at the deadline.

Three displays: a rich live view on a terminal (counts per state, a progress bar, failures
grouped by identical reason, the devices still waiting; for a staged rollout its state and
one row per group), plain lines without control codes when the output is not a terminal (CI
logs: one line per change, an unchanged line again once a minute), and nothing but the final
task document with ``-o json``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from swarmdeploy.cli.render import safe
from swarmdeploy.client import ApiError, ManagerClient
from swarmdeploy.client.progress import Progress, progress
from swarmdeploy.client.stream import EventStream

#: Exit status of a follow that reached its ``--timeout`` with devices still on their way.
EXIT_TIMEOUT = 3
#: How many waiting device ids the displays name.
WAITING_SHOWN = 10
#: Plain output repeats an unchanged state line at most this often.
PLAIN_REPEAT_S = 60.0

Show = Callable[[dict[str, Any], Progress], None]


#: Statuses of a manager that is away for a moment (restarting, behind a proxy): the follower
#: keeps its last reading and tries again instead of giving up.
TRANSIENT = frozenset({0, 502, 503, 504})


def follow_task(
    client: ManagerClient,
    task_id: str,
    show: Show,
    *,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    stream: EventStream | None = None,
) -> tuple[dict[str, Any], Progress, bool]:
    """Follow ``task_id`` until it settles or ``timeout_s`` passes, calling ``show`` with
    each new reading; returns the last task document, its progress and whether it timed
    out. A manager that cannot be reached for a while (a restart) is waited for. Raises
    :class:`ApiError` (the task was deleted, the key refused, ...). ``stream`` replaces the
    ``/events`` subscription (its owner closes it)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    params = {"topics": "taskUpdated,taskDeleted,rolloutUpdated", "task": task_id}
    with contextlib.ExitStack() as owned:
        if stream is None:
            stream = owned.enter_context(EventStream(client, params))
        stream.ensure_open()
        doc = client.request("GET", f"/tasks/{task_id}")
        now = progress(doc)
        show(doc, now)
        while not finished(doc, now):
            remaining = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if remaining <= 0:
                return doc, now, True
            frames = stream.frames(remaining)
            if any(f.get("topic") == "taskDeleted" for f in frames):
                raise ApiError(404, f"task {task_id} was deleted while it was followed")
            try:
                doc = client.request("GET", f"/tasks/{task_id}")
            except ApiError as exc:
                if exc.status not in TRANSIENT:
                    raise
                continue  # the stream's reconnect pause paces the next try
            now = progress(doc)
            show(doc, now)
    return doc, now, False


def finished(doc: dict[str, Any], now: Progress) -> bool:
    """Whether following can end: no device on its way, or a halted rollout (whose later
    groups stay ``pending`` until an operator resumes, retries or aborts it)."""
    return now.settled or rollout_state(doc) == "halted"


def rollout_state(doc: dict[str, Any]) -> str | None:
    """The state of the task's staged rollout, or ``None`` without one."""
    rollout = doc.get("rollout")
    return str(rollout.get("state")) if isinstance(rollout, dict) else None


def rollout_line(doc: dict[str, Any]) -> str | None:
    """One line on the rollout: its state, the current group and, when halted, paused or
    aborted, why (``None`` without a rollout)."""
    rollout = doc.get("rollout")
    if not isinstance(rollout, dict):
        return None
    groups = rollout.get("groups") or []
    current = int(rollout.get("currentGroup") or 0)
    state = safe(rollout.get("state"))
    line = f"rollout {state}, group {current + 1} of {len(groups)}"
    if groups and current < len(groups):
        line += f" ({safe(groups[current].get('name'))})"
    if rollout.get("reason"):
        line += f": {safe(rollout['reason'])}"
    return line


def group_cells(doc: dict[str, Any]) -> list[tuple[str, str, int, int, int, int]]:
    """Per group of the rollout: ``(name, mark, size, succeeded, failed, not announced)``;
    ``mark`` is ``done`` (an earlier group), the rollout's state for the current group and
    ``waiting`` for later ones."""
    rollout = doc.get("rollout")
    if not isinstance(rollout, dict):
        return []
    current = int(rollout.get("currentGroup") or 0)
    state = str(rollout.get("state"))
    cells = []
    for i, group in enumerate(rollout.get("groups") or []):
        if state == "completed" or i < current:
            mark = "done"
        elif i == current:
            mark = state
        else:
            mark = "waiting"
        cells.append((safe(group.get("name")), mark, int(group.get("size") or 0),
                      int(group.get("succeeded") or 0), int(group.get("failed") or 0),
                      int(group.get("notAnnounced") or 0)))  # fmt: skip
    return cells


def _rollout_view(doc: dict[str, Any]) -> RenderableType:
    table = Table("group", "", "devices", "succeeded", "failed", "not announced", box=None)
    for name, mark, size, good, bad, waiting in group_cells(doc):
        table.add_row(Text(name), Text(mark), Text(str(size)), Text(str(good)),
                      Text(str(bad)), Text(str(waiting)))  # fmt: skip
    return Group(Text(rollout_line(doc) or "", style="bold"), table)


def render(doc: dict[str, Any], now: Progress) -> RenderableType:
    """The live view of one reading (every API string escaped)."""
    title = Text(f"task {safe(doc.get('id'))}", style="bold")
    if doc.get("description"):
        title.append(f"  {safe(doc['description'])}")
    done = now.total - len(now.waiting)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(now.total, 1), completed=done, width=40),
                Text(f"{done}/{now.total} settled"))  # fmt: skip
    states = Table("state", "devices", box=None, padding=(0, 2))
    for state, count in sorted(now.by_state.items()):
        states.add_row(Text(safe(state)), Text(str(count)))
    parts: list[RenderableType] = [title, bar, states]
    if rollout_state(doc) is not None:
        parts.append(_rollout_view(doc))
    if now.failures:
        failures = Table("count", "state", "reason", "devices", title="failures", box=None)
        for group in now.failures:
            more = " …" if group.count > len(group.sample) else ""
            failures.add_row(Text(str(group.count)), Text(safe(group.state)),
                             Text(safe(group.reason) or "-"),
                             Text(", ".join(safe(i) for i in group.sample[:5]) + more))  # fmt: skip
        parts.append(failures)
    if now.waiting:
        parts.append(Text(f"waiting ({len(now.waiting)}): {_names(now.waiting)}"))
    return Group(*parts)


def _names(ids: tuple[str, ...]) -> str:
    shown = ", ".join(safe(i) for i in ids[:WAITING_SHOWN])
    return shown + (f" and {len(ids) - WAITING_SHOWN} more" if len(ids) > WAITING_SHOWN else "")


def plain_line(now: Progress, doc: dict[str, Any] | None = None) -> str:
    """One plain progress line (no control codes): settled count, states, waiting ids; with
    the task document ``doc`` of a staged rollout, then the rollout and its groups
    (``name mark succeeded/size ok, failed failed``)."""
    done = now.total - len(now.waiting)
    states = ", ".join(f"{safe(s)} {n}" for s, n in sorted(now.by_state.items())) or "no targets"
    line = f"{done}/{now.total} settled: {states}"
    if now.waiting:
        line += f"; waiting: {_names(now.waiting)}"
    about = None if doc is None else rollout_line(doc)
    if doc is not None and about is not None:
        groups = "; ".join(f"{name} {mark} {good}/{size} ok, {bad} failed"
                           for name, mark, size, good, bad, _ in group_cells(doc))  # fmt: skip
        line += f" | {about} | {groups}"
    return line


class PlainShow:
    """Prints :func:`plain_line` when it changes (or after :data:`PLAIN_REPEAT_S`)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._last = ""
        self._at = 0.0

    def __call__(self, doc: dict[str, Any], now: Progress) -> None:
        line = plain_line(now, doc)
        if line != self._last or time.monotonic() - self._at >= PLAIN_REPEAT_S:
            self._write(f"{time.strftime('%H:%M:%S')} task {safe(doc.get('id'))}: {line}")
            self._last, self._at = line, time.monotonic()


def failure_lines(now: Progress) -> list[str]:
    """One line per failure group: ``2 x install_failed: exit status 1 (a, b)``."""
    lines = []
    for group in now.failures:
        names = ", ".join(safe(i) for i in group.sample[:WAITING_SHOWN])
        more = ", …" if group.count > min(len(group.sample), WAITING_SHOWN) else ""
        reason = safe(group.reason) or "no reason given"
        lines.append(f"{group.count} x {safe(group.state)}: {reason} ({names}{more})")
    return lines


def watch(
    client: ManagerClient,
    task_id: str,
    console: Console,
    *,
    as_json: bool,
    poll_s: float,
    timeout_s: float | None,
) -> tuple[dict[str, Any], Progress, bool]:
    """Follow ``task_id`` with the display that fits ``console`` (see the module
    docstring)."""
    if as_json:
        return follow_task(client, task_id, lambda d, p: None, poll_s=poll_s, timeout_s=timeout_s)
    if not console.is_terminal:
        show = PlainShow(lambda line: console.print(Text(line), highlight=False))
        return follow_task(client, task_id, show, poll_s=poll_s, timeout_s=timeout_s)
    with Live(console=console, auto_refresh=False, transient=False) as live:

        def update(doc: dict[str, Any], now: Progress) -> None:
            live.update(render(doc, now), refresh=True)

        return follow_task(client, task_id, update, poll_s=poll_s, timeout_s=timeout_s)
