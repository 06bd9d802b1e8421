"""The agent's nonce memory for signed requests (``agent/request_trust.py``): persisted before
the command runs, forgotten once expired, bounded without forgetting live nonces."""

from __future__ import annotations

import base64

import pytest

from swarmdeploy.agent import request_trust
from swarmdeploy.agent.errors import TaskRefused
from swarmdeploy.agent.request_trust import RequestTrust
from swarmdeploy.agent.state import AgentState
from swarmdeploy.agent.trust import Verifier
from swarmdeploy.crypto.operator import seed_signer
from swarmdeploy.crypto.requests import RequestStatement, encode_statement, new_nonce, sign_request
from swarmdeploy.protocol.messages import TerminalCommand
from tests.crypto import signing_rig
from tests.crypto.signing_rig import NOW_MS, TARGET


class Clock:
    def __init__(self) -> None:
        self.now = NOW_MS

    def __call__(self) -> int:
        return self.now


def command(request_id: str, alice: signing_rig.Operator, at_ms: int = NOW_MS) -> TerminalCommand:
    statement = RequestStatement(
        kind="terminal",
        request_id=request_id,
        target_id=TARGET,
        command="uptime",
        nonce=new_nonce(),
        issued_at_ms=at_ms,
        expires_at_ms=at_ms + 60_000,
    )
    signature = sign_request(statement, seed_signer(alice.seed), alice.certificate)
    return TerminalCommand(
        request_id=request_id,
        command="uptime",
        statement=base64.b64encode(encode_statement(statement)).decode(),
        signature=base64.b64encode(signature).decode(),
        certificate=alice.certificate.decode(),
    )


def make() -> tuple[RequestTrust, AgentState, Clock, list[int]]:
    clock = Clock()
    state = AgentState(agent_id=TARGET)
    saves: list[int] = []
    verifier = Verifier(signing_rig.anchors(), clock=clock)
    trust = RequestTrust(verifier, state, lambda: saves.append(len(state.request_nonces)))
    return trust, state, clock, saves


def test_nonce_is_saved_before_the_command_is_handed_out() -> None:
    trust, state, _, saves = make()
    authorised = trust.accept_terminal(command("r1", signing_rig.new_operator()))
    assert authorised.command == "uptime" and authorised.signer == "alice"
    assert saves == [1] and len(state.request_nonces) == 1


def test_expired_nonces_are_forgotten() -> None:
    trust, state, clock, _ = make()
    alice = signing_rig.new_operator()
    trust.accept_terminal(command("r1", alice))
    clock.now = NOW_MS + 61_000  # r1's statement expired: a replay is refused as expired
    trust.accept_terminal(command("r2", alice, at_ms=clock.now))
    assert list(state.request_nonces.values()) == [clock.now + 60_000]


def test_full_memory_refuses_instead_of_forgetting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_trust, "MAX_NONCES", 2)
    trust, state, _, _ = make()
    alice = signing_rig.new_operator()
    trust.accept_terminal(command("r1", alice))
    trust.accept_terminal(command("r2", alice))
    with pytest.raises(TaskRefused) as refused:
        trust.accept_terminal(command("r3", alice))
    assert refused.value.code == "busy" and len(state.request_nonces) == 2
