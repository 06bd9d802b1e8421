"""Per-task state reports: persisted first, then sent, re-sent until acknowledged (§6.4).

:class:`StateReporter` is the agent's one choke point for task state changes: it checks
the transition against the shared table (:mod:`swarmdeploy.protocol.states`), records it in
the persisted :class:`~swarmdeploy.agent.state.AgentState` (history and unacknowledged
reports), saves the state, logs one line and sends the ``state`` message. Unacknowledged
reports travel again in every ``hello`` (§6.2) and, while none is acked, after ``resend_s``,
then after twice as long each time (:class:`~swarmdeploy.agent.backoff.Backoff`: capped, with
jitter); a new report, an ack or a ``hello`` brings the interval back to ``resend_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from swarmdeploy.agent.backoff import Backoff
from swarmdeploy.agent.state import AgentState
from swarmdeploy.protocol.errors import TransitionError
from swarmdeploy.protocol.messages import Message, StateAck, StateReport, TaskReport
from swarmdeploy.protocol.states import (
    EVENT_FOR_REPORTED_STATE,
    FINAL_STATES,
    TargetState,
    can_apply,
    event_path,
    next_state,
)

logger = logging.getLogger(__name__)

#: Sends one message; False when the link is down (the message is then lost).
Send = Callable[[Message], Awaitable[bool]]
_MAX_HELLO_TASKS = 1000


class StateReporter:
    """Records and reports this target's task states. See the module docstring."""

    def __init__(
        self,
        state: AgentState,
        save: Callable[[], None],
        send: Send,
        resend_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self._state = state
        self._save = save
        self._send = send
        self._clock = clock
        self._backoff = Backoff(resend_s, rng=rng)
        self._waiters: dict[tuple[str, TargetState], list[asyncio.Future[StateAck]]] = {}

    def current(self, task_id: str) -> TargetState | None:
        """The latest state of ``task_id`` this agent knows (None: never heard of it)."""
        return self._state.history.get(task_id)

    async def report(self, task_id: str, new: TargetState, reason: str = "") -> bool:
        """Record ``new`` for ``task_id``, persist, then send it. False (and nothing is
        recorded) if the state table does not allow it from the current state."""
        old = self._state.history.get(task_id, TargetState.ANNOUNCED)
        event = EVENT_FOR_REPORTED_STATE.get(new)
        if event is None or not can_apply(old, event):
            logger.warning(
                "task %s: not reporting %s after %s (not in the table)", task_id, new, old
            )
            return False
        item = self._state.report(task_id, new, reason[:4096] or None)
        self._save()
        detail = f" ({reason})" if reason else ""
        logger.info("task %s: %s -> %s%s", task_id, old, new, detail, extra={"task": task_id})
        self._backoff.reset()
        self._backoff.sent(self._clock())
        await self._send(_message(item.task_id, item.state, item.reason, item.at_ms))
        return True

    async def report_path(self, task_id: str, target: TargetState, reason: str = "") -> bool:
        """Report ``target``, first reporting the intermediate states the table needs to get
        there (e.g. ``accepted -> installing -> install_failed``); ``reason`` goes on the
        last one. False if ``target`` cannot be reached."""
        old = self._state.history.get(task_id, TargetState.ANNOUNCED)
        try:
            events = event_path(old, target)
        except TransitionError:
            logger.warning("task %s: %s cannot be reached from %s", task_id, target, old)
            return False
        state = old
        for i, event in enumerate(events):
            state = next_state(state, event)
            last = i == len(events) - 1
            await self.report(task_id, state, reason if last else "")
        return True

    async def repeat(self, task_id: str) -> None:
        """Send again where this agent stands with ``task_id`` (the answer to a duplicate
        delivery, e.g. a re-announcement): its unacknowledged reports, else its state."""
        items = [r for r in self._state.unacked if r.task_id == task_id]
        for r in items:
            await self._send(_message(r.task_id, r.state, r.reason, r.at_ms))
        state = self._state.history.get(task_id)
        if not items and state is not None:
            await self._send(_message(task_id, state, None, 0))

    def adopt(self, task_id: str, state: TargetState) -> None:
        """Take over a state the manager holds (a refused report, §6.4) without sending it."""
        self._state.remember(task_id, state)
        self._state.unacked = [r for r in self._state.unacked if r.task_id != task_id]
        self._save()

    def on_ack(self, ack: StateAck) -> None:
        """The manager persisted (or refused) a report: stop re-sending it, wake waiters."""
        if self._state.ack_report(ack.task_id, ack.state):
            self._save()
        self._backoff.reset()
        for future in self._waiters.pop((ack.task_id, ack.state), []):
            if not future.done():
                future.set_result(ack)

    async def wait_acked(self, task_id: str, state: TargetState) -> StateAck:
        """Wait for the ack of ``(task_id, state)``; at once (``ok``) if it is not pending."""
        if not any((r.task_id, r.state) == (task_id, state) for r in self._state.unacked):
            return StateAck(task_id=task_id, state=state, ok=True)
        future: asyncio.Future[StateAck] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((task_id, state), []).append(future)
        return await future

    def hello_tasks(self) -> list[TaskReport]:
        """For ``hello``: every unacknowledged report, then the latest state of every other
        task that is not final (§4.1)."""
        out = [
            TaskReport(task_id=r.task_id, state=r.state, reason=r.reason or "", at_ms=r.at_ms)
            for r in self._state.unacked
        ]
        pending = {r.task_id for r in self._state.unacked}
        for task_id, state in self._state.history.items():
            if task_id not in pending and state not in FINAL_STATES:
                out.append(TaskReport(task_id=task_id, state=state))
        return out[-_MAX_HELLO_TASKS:]

    def sent_with_hello(self) -> None:
        """The unacknowledged reports just went out in a ``hello`` (a new connection):
        restart the resend timer at ``resend_s``."""
        self._backoff.reset()
        self._backoff.sent(self._clock())

    async def resend_due(self) -> None:
        """Re-send every unacknowledged report, in order, if their backoff wait is over
        (``resend_s`` after the last send, doubling while nothing is acked)."""
        now = self._clock()
        if not self._state.unacked or not self._backoff.due(now):
            return
        self._backoff.sent(now)
        for r in list(self._state.unacked):
            await self._send(_message(r.task_id, r.state, r.reason, r.at_ms))


def _message(task_id: str, state: TargetState, reason: str | None, at_ms: int) -> StateReport:
    return StateReport(task_id=task_id, state=state, reason=reason or "", at_ms=at_ms)
