"""Requests as the API submits them, as stored records and as wire messages (§6.8)."""

from __future__ import annotations

import dataclasses

import pytest

from swarmdeploy.manager.dispatch import CommandRequest, CommandStopRequest, StopRequest
from swarmdeploy.manager.link.pending import (
    describe,
    from_record,
    is_terminal,
    to_message,
    to_record,
)
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.errors import MessageError


def test_requests_become_wire_messages_with_their_ids() -> None:
    stop = StopRequest("task-1")
    command = CommandRequest("ls", "alice")
    assert to_message(stop) == m.Stop(request_id=stop.id, task_id="task-1")
    assert to_message(command) == m.TerminalCommand(request_id=command.id, command="ls")
    everything = StopRequest()
    assert to_message(everything) == m.Stop(request_id=everything.id, task_id="")
    assert is_terminal(command) and is_terminal(CommandStopRequest()) and not is_terminal(stop)


@pytest.mark.parametrize(
    "message",
    [
        m.Stop(request_id="r1", task_id="task-1"),
        m.LogRequest(request_id="r2", since_ms=17),
        m.TerminalCommand(request_id="r3", command="uptime"),
        m.TerminalStop(request_id="r4"),
        m.Config(request_id="c-5", revision=5, tags=["a"], location=m.Location(lat=1, lon=2)),
    ],
)
def test_stored_form_gives_back_the_same_message(message: m.Message) -> None:
    assert isinstance(
        message, m.Stop | m.LogRequest | m.TerminalCommand | m.TerminalStop | m.Config
    )
    record = to_record("t", message, now_ms=1000, terminal_expiry_ms=60_000)
    assert (record.id, record.target_id, record.state) == (message.request_id, "t", "pending")
    assert record.kind == m.message_type(message) and "request_id" not in record.payload
    assert record.expires_at == (61_000 if is_terminal(message) else None)
    assert from_record(record) == message


def test_damaged_record_is_a_message_error() -> None:
    record = to_record(
        "t", m.TerminalCommand(request_id="r", command="ls"), now_ms=0, terminal_expiry_ms=1
    )
    with pytest.raises(MessageError):
        from_record(dataclasses.replace(record, payload={"command": ""}))
    with pytest.raises(MessageError):
        from_record(dataclasses.replace(record, kind="hello"))


def test_descriptions_name_terminal_commands() -> None:
    command = to_record(
        "t", m.TerminalCommand(request_id="r", command="ls"), now_ms=0, terminal_expiry_ms=1
    )
    assert describe(command) == "terminal command 'ls'"
    stop = to_record("t", m.TerminalStop(request_id="s"), now_ms=0, terminal_expiry_ms=1)
    assert describe(stop) == "terminal stop"
