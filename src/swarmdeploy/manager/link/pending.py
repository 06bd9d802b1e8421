"""Bookkeeping of manager -> agent requests until acknowledged (docs/protocol.md §6.8).

Each request is kept, keyed by its ``request_id``, until the agent answers ``request_ack``.
``terminal`` and ``terminal_stop`` of an absent target expire (their age is tracked both
while queued in the dispatcher and once sent); ``config`` is one per target: a newer one
replaces a pending older one. No I/O here; :mod:`.requests` does the sending.
"""

from __future__ import annotations

import collections
import dataclasses
import logging

from swarmdeploy.manager import dispatch
from swarmdeploy.protocol import messages as m

log = logging.getLogger(__name__)

RequestMessage = m.Stop | m.LogRequest | m.TerminalCommand | m.TerminalStop | m.Config
_MAX_PENDING = 1000


def to_message(request: dispatch.TargetRequest) -> RequestMessage:
    """The wire message of a dispatcher request (same id)."""
    if isinstance(request, dispatch.StopRequest):
        return m.Stop(request_id=request.id, task_id=request.task_id or "")
    if isinstance(request, dispatch.LogRequest):
        return m.LogRequest(request_id=request.id, since_ms=max(0, request.if_modified_since))
    if isinstance(request, dispatch.CommandRequest):
        return m.TerminalCommand(request_id=request.id, command=request.command)
    return m.TerminalStop(request_id=request.id)


def is_terminal(request: dispatch.TargetRequest | RequestMessage) -> bool:
    """Whether the request belongs to the terminal (expires while the target is away)."""
    kinds = (
        dispatch.CommandRequest,
        dispatch.CommandStopRequest,
        m.TerminalCommand,
        m.TerminalStop,
    )
    return isinstance(request, kinds)


@dataclasses.dataclass(frozen=True, slots=True)
class Pending:
    """A request sent (or about to be sent) and not yet acknowledged."""

    message: RequestMessage
    created_ms: int


class PendingRequests:
    """Unacknowledged requests per target, in the order they were created."""

    def __init__(self) -> None:
        self._pending: dict[str, collections.OrderedDict[str, Pending]] = {}
        self._queued_terminal: dict[str, dict[str, int]] = {}

    def add(self, target_id: str, message: RequestMessage, now_ms: int) -> Pending:
        """Keep ``message`` until acknowledged; a ``config`` replaces older ones."""
        queue = self._pending.setdefault(target_id, collections.OrderedDict())
        if isinstance(message, m.Config):
            for request_id in [k for k, p in queue.items() if isinstance(p.message, m.Config)]:
                del queue[request_id]
        entry = queue.get(message.request_id) or Pending(message, now_ms)
        queue[message.request_id] = entry
        while len(queue) > _MAX_PENDING:
            dropped, _ = queue.popitem(last=False)
            log.warning("too many unacknowledged requests for %s; dropped %s", target_id, dropped)
        self._queued_terminal.get(target_id, {}).pop(message.request_id, None)
        return entry

    def pending(self, target_id: str) -> list[Pending]:
        """The unacknowledged requests of ``target_id``, oldest first."""
        return list(self._pending.get(target_id, {}).values())

    def ack(self, target_id: str, request_id: str) -> Pending | None:
        """Forget an acknowledged request; returns it (``None``: unknown or a repeat ack)."""
        queue = self._pending.get(target_id)
        if not queue:
            return None
        entry = queue.pop(request_id, None)
        if not queue:
            del self._pending[target_id]
        return entry

    def note_queued(self, target_id: str, request: dispatch.TargetRequest, now_ms: int) -> None:
        """A terminal request waits in the dispatcher for an offline target: start its clock."""
        if is_terminal(request):
            self._queued_terminal.setdefault(target_id, {})[request.id] = now_ms

    def expire_terminal(
        self, target_id: str, now_ms: int, max_age_ms: int
    ) -> tuple[list[Pending], list[str]]:
        """Terminal requests of an absent target older than ``max_age_ms``: the pending ones
        are removed and returned; the ids of those still queued in the dispatcher are
        returned (and forgotten) for the caller to remove there."""
        expired: list[Pending] = []
        queue = self._pending.get(target_id)
        if queue:
            for request_id, entry in list(queue.items()):
                if is_terminal(entry.message) and now_ms - entry.created_ms >= max_age_ms:
                    expired.append(queue.pop(request_id))
            if not queue:
                del self._pending[target_id]
        queued = self._queued_terminal.get(target_id, {})
        old = [rid for rid, since in queued.items() if now_ms - since >= max_age_ms]
        for request_id in old:
            del queued[request_id]
        if not queued:
            self._queued_terminal.pop(target_id, None)
        return expired, old

    def targets_with_terminal(self) -> list[str]:
        """Targets that have terminal requests pending or queued."""
        ids = set(self._queued_terminal)
        for target_id, queue in self._pending.items():
            if any(is_terminal(p.message) for p in queue.values()):
                ids.add(target_id)
        return sorted(ids)

    def forget(self, target_id: str) -> None:
        """Drop everything of a revoked target."""
        self._pending.pop(target_id, None)
        self._queued_terminal.pop(target_id, None)
