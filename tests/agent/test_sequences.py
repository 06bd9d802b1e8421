"""Sequence bookkeeping and fast-forward recovery (agent/sequences.py)."""

from __future__ import annotations

from swarmdeploy.agent.sequences import MAX_SIGNERS, forget_revoked, note_accepted
from swarmdeploy.agent.state import TrustState


def _accept(trust: TrustState, task: str, sequence: int, key: str, serial: int) -> None:
    note_accepted(trust, kind="deploy", task_id=task, sequence=sequence, key_id=key, serial=serial)


def test_last_sequence_and_task_follow_the_highest_accepted() -> None:
    trust = TrustState()
    _accept(trust, "t1", 3, "a" * 32, 1)
    _accept(trust, "t2", 9, "b" * 32, 2)
    _accept(trust, "t3", 4, "a" * 32, 1)  # accepted after a restart re-check: not newest
    assert trust.last_sequence == {"deploy": 9} and trust.last_task == {"deploy": "t2"}
    assert {m.key_id: m.sequence for m in trust.signers["deploy"]} == {"a" * 32: 4, "b" * 32: 9}


def test_revoking_the_fast_forwarding_key_by_serial_restores_the_honest_sequence() -> None:
    trust = TrustState()
    _accept(trust, "t1", 5, "a" * 32, 1)
    _accept(trust, "evil", 2**62, "e" * 32, 66)
    assert forget_revoked(trust, serials={66}, key_ids=set()) == ["deploy"]
    assert trust.last_sequence["deploy"] == 5 and "deploy" not in trust.last_task
    assert [m.key_id for m in trust.signers["deploy"]] == ["a" * 32]


def test_revoking_by_key_id_and_revoking_an_honest_key_below_the_top() -> None:
    trust = TrustState()
    _accept(trust, "t1", 5, "a" * 32, 1)
    _accept(trust, "t2", 8, "b" * 32, 2)
    assert forget_revoked(trust, serials=set(), key_ids={"a" * 32}) == []  # not the top
    assert trust.last_sequence["deploy"] == 8 and trust.last_task["deploy"] == "t2"
    assert forget_revoked(trust, serials=set(), key_ids={"b" * 32}) == ["deploy"]
    assert trust.last_sequence["deploy"] == 0  # every signer revoked: their tasks are refused


def test_state_without_marks_is_left_alone() -> None:
    trust = TrustState(last_sequence={"deploy": 12}, last_task={"deploy": "t"})
    assert forget_revoked(trust, serials={1}, key_ids={"a" * 32}) == []
    assert trust.last_sequence == {"deploy": 12}


def test_marks_are_bounded_keeping_the_highest() -> None:
    trust = TrustState()
    for i in range(MAX_SIGNERS + 10):
        _accept(trust, f"t{i}", i + 1, f"{i:032x}", i + 1)
    marks = trust.signers["deploy"]
    assert len(marks) == MAX_SIGNERS
    assert min(m.sequence for m in marks) == 11
