"""Bookkeeping of unacknowledged requests and the expiry of terminal ones (§6.8)."""

from __future__ import annotations

from swarmdeploy.manager.dispatch import CommandRequest, StopRequest
from swarmdeploy.manager.link.pending import PendingRequests, is_terminal, to_message
from swarmdeploy.protocol import messages as m


def test_requests_become_wire_messages_with_their_ids() -> None:
    stop = StopRequest("task-1")
    command = CommandRequest("ls", "alice")
    assert to_message(stop) == m.Stop(request_id=stop.id, task_id="task-1")
    assert to_message(command) == m.TerminalCommand(request_id=command.id, command="ls")
    assert is_terminal(command) and not is_terminal(stop)


def test_pending_until_acked_and_config_replaced() -> None:
    p = PendingRequests()
    p.add("t", m.Stop(request_id="r1"), 1)
    p.add("t", m.Config(request_id="c1", revision=1), 2)
    p.add("t", m.Config(request_id="c2", revision=2), 3)
    assert [e.message.request_id for e in p.pending("t")] == ["r1", "c2"]
    assert p.ack("t", "r1") is not None
    assert p.ack("t", "r1") is None  # a repeated ack
    assert [e.message.request_id for e in p.pending("t")] == ["c2"]


def test_terminal_requests_expire_pending_and_queued() -> None:
    p = PendingRequests()
    p.add("t", m.TerminalCommand(request_id="r1", command="ls"), 0)
    p.add("t", m.Stop(request_id="r2"), 0)
    queued = CommandRequest("uptime", "bob")
    p.note_queued("t", queued, 500)
    assert p.targets_with_terminal() == ["t"]
    assert p.expire_terminal("t", 999, 1000) == ([], [])
    expired, ids = p.expire_terminal("t", 1000, 1000)
    assert [e.message.request_id for e in expired] == ["r1"] and ids == []
    assert p.expire_terminal("t", 1500, 1000)[1] == [queued.id]
    assert [e.message.request_id for e in p.pending("t")] == ["r2"]
    assert p.targets_with_terminal() == []


def test_delivered_queued_terminal_request_stops_its_queue_clock() -> None:
    p = PendingRequests()
    queued = CommandRequest("uptime", "bob")
    p.note_queued("t", queued, 0)
    p.add("t", to_message(queued), 900)
    assert p.expire_terminal("t", 1000, 1000) == ([], [])
