"""The remote terminal on the device (issue 9): a command runs only when an operator signed
it for this target, now, once -- and then as the sandbox user unless the device's own
policy (``--terminal``) says otherwise. Every refusal runs nothing and names its code.

The real daemon (sandbox included) against the fake manager, provisioned with the test CA
(``tests/security/rig.py``)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from swarmdeploy.crypto.requests import RequestStatement, encode_statement
from swarmdeploy.protocol.messages import Config, TerminalCommand
from tests.agent.daemon_rig import TARGET, Rig
from tests.security.rig import (
    now_ms,
    operator,
    revocation_list,
    secured_rig,
    signed_command,
)

#: The command of refusal tests: had it run, its "$ " line and its output would show.
PROOF = "echo ran"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with await secured_rig(tmp_path) as rig:
        yield rig


async def refused(rig: Rig, msg: TerminalCommand, code: str) -> None:
    """Send ``msg``; the agent refuses it with ``code`` and nothing runs."""
    await rig.manager.send(TARGET, msg)
    ok, message = await rig.acked(msg.request_id)
    assert not ok and message.startswith(f"refused: {code}:"), message
    await rig.output_seen("terminal", message)
    out = rig.outputs("terminal")
    assert "ran" not in out and not any(line.startswith("$ ") for line in out), out


async def test_signed_command_runs_as_the_sandbox_user_not_root(rig: Rig) -> None:
    await rig.start()
    alice = operator()
    shell = "id -u; head -1 /etc/shadow || echo no-shadow; ls /proc/1/root 2>&1 | head -1"
    await rig.manager.send(TARGET, signed_command("c1", shell, alice))
    assert await rig.acked("c1") == (True, "started")
    await rig.output_seen("terminal", "exit status 0")
    out = rig.outputs("terminal")
    assert "65534" in out and "no-shadow" in out and "0" not in out
    stages = {e.stage for e in rig.manager.logs[TARGET] if e.task == "terminal"}
    assert stages == {f"terminal:{alice_key_id(alice.certificate)}"}
    security = rig.manager.hellos[-1][1].extra["security"]
    assert security["terminal"] == "sandboxed" and security["on_revoked"] == "keep"


def alice_key_id(certificate: bytes) -> str:
    from swarmdeploy.crypto.operator import unverified_certificate

    return unverified_certificate(certificate).key_id


async def test_unsigned_command_is_refused(rig: Rig) -> None:
    await rig.start()
    await refused(rig, TerminalCommand(request_id="c1", command=PROOF), "unsigned")


async def test_command_changed_after_signing_is_refused(rig: Rig) -> None:
    await rig.start()
    msg = signed_command("c1", "echo harmless", operator())
    statement = msgspec.json.decode(base64.b64decode(msg.statement), type=RequestStatement)
    changed = msgspec.structs.replace(statement, command=PROOF)
    forged = base64.b64encode(encode_statement(changed)).decode()
    await refused(rig, msgspec.structs.replace(msg, statement=forged), "bad_signature")


async def test_plain_command_field_is_never_what_runs(rig: Rig) -> None:
    await rig.start()
    msg = signed_command("c1", "echo signed", operator())
    await rig.manager.send(TARGET, msgspec.structs.replace(msg, command=PROOF))
    await rig.output_seen("terminal", "exit status 0")
    assert "signed" in rig.outputs("terminal") and "ran" not in rig.outputs("terminal")


async def test_command_signed_by_unknown_ca_is_refused(rig: Rig) -> None:
    from swarmdeploy.crypto import ca as ca_mod
    from tests.crypto.signing_rig import Operator, operator_cert

    other = ca_mod.create_ca("another CA", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    seed = b"\x01" * 32
    stranger = Operator(seed, operator_cert(seed, ca=other, not_before_ms=now_ms() - 10**6))
    await rig.start()
    await refused(rig, signed_command("c1", PROOF, stranger), "unknown_signer")


async def test_command_for_another_target_is_refused(rig: Rig) -> None:
    await rig.start()
    msg = signed_command("c1", PROOF, operator(), target="dev-2")
    await refused(rig, msg, "wrong_target")


async def test_signature_of_another_request_id_is_refused(rig: Rig) -> None:
    await rig.start()
    msg = signed_command("c1", PROOF, operator())
    await refused(rig, msgspec.structs.replace(msg, request_id="c2"), "wrong_task")


async def test_expired_command_is_refused(rig: Rig) -> None:
    await rig.start()
    old = now_ms() - 10 * 60_000
    msg = signed_command("c1", PROOF, operator(), issued_at_ms=old)
    await refused(rig, msg, "request_expired")


async def test_command_of_a_revoked_key_is_refused(rig: Rig) -> None:
    await rig.start()
    assert rig.daemon is not None
    rig.daemon.verifier.apply_revocation_list(revocation_list(1, serials=frozenset({66})))
    await refused(rig, signed_command("c1", PROOF, operator(serial=66)), "revoked_signer")


async def test_viewer_key_cannot_sign_a_command(rig: Rig) -> None:
    await rig.start()
    viewer = operator(role="viewer")
    await refused(rig, signed_command("c1", PROOF, viewer), "signer_not_authorized")


async def test_replay_is_refused_even_after_the_agent_forgot_the_request_id(rig: Rig) -> None:
    await rig.start()
    msg = signed_command("c1", PROOF, operator())
    await rig.manager.send(TARGET, msg)
    assert await rig.acked("c1") == (True, "started")
    await rig.output_seen("terminal", "exit status 0")
    await rig.stop()
    state = rig.state()
    state.recent_requests = []  # e.g. rolled out of its bounded memory
    rig.save(state)
    rig.manager.acks.clear()
    await rig.start()
    await rig.manager.send(TARGET, msg)
    ok, message = await rig.acked("c1")
    assert not ok and message.startswith("refused: replayed:"), message
    await rig.output_seen("terminal", message)
    assert rig.outputs("terminal").count("ran") == 1


async def test_terminal_off_refuses_even_signed_commands(tmp_path: Path) -> None:
    async with await secured_rig(tmp_path, terminal="off") as rig:
        await rig.start()
        await refused(rig, signed_command("c1", PROOF, operator()), "terminal_off")
        assert rig.manager.hellos[-1][1].extra["security"]["terminal"] == "off"


async def test_terminal_root_policy_is_the_devices_choice(tmp_path: Path) -> None:
    async with await secured_rig(tmp_path, terminal="root") as rig:
        await rig.start()
        await rig.manager.send(TARGET, signed_command("c1", "id -u", operator()))
        await rig.output_seen("terminal", "exit status 0")
        assert "0" in rig.outputs("terminal")


async def test_manager_cannot_widen_the_terminal_policy(rig: Rig) -> None:
    await rig.start()
    widen = Config(request_id="k1", revision=9, tags=["field"], extra={"terminal": "root"})
    await rig.manager.send(TARGET, widen)
    assert (await rig.acked("k1"))[0]
    await rig.manager.send(TARGET, signed_command("c1", "id -u", operator()))
    await rig.output_seen("terminal", "exit status 0")
    assert "65534" in rig.outputs("terminal") and "0" not in rig.outputs("terminal")
