"""A running deployment whose signing key is revoked (issue 9): the agent marks it at once
(``signer_revoked`` in ``security``, ``signerRevoked`` on the target) and, with
``--on-revoked stop``, stops it -- not only at its next start."""

from __future__ import annotations

from pathlib import Path

from swarmdeploy.protocol.messages import Hint, id_topic
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig
from tests.agent.helpers import eventually, live_with_marker
from tests.security.rig import deploy, operator, revocation_list, secured_rig

S = TargetState
APP = {"app.sh": "echo started\nexec sleep 300\n"}


def reported(rig: Rig) -> list[str]:
    """``security.signer_revoked`` of the latest health report (or hello)."""
    latest = rig.manager.health[-1][1] if rig.manager.health else rig.manager.hellos[-1][1]
    found = latest.extra.get("security", {}).get("signer_revoked", [])
    return list(found) if isinstance(found, list) else []


async def revoke_and_hint(rig: Rig, serial: int) -> None:
    """The manager revokes ``serial``: its next welcome carries the list; a hint makes the
    agent say hello now."""
    rig.manager.revocations = revocation_list(1, serials=frozenset({serial}))
    await rig.manager.transport.publish(id_topic(TARGET), Hint(reason="sync"))


async def running(rig: Rig, serial: int) -> str:
    await rig.start()
    signer = operator(serial=serial)
    await deploy(rig, "t1", S.RUNNING, files=APP, run=["sh app.sh"], sequence=3, signer=signer)
    await rig.output_seen("t1", "started", 10)
    return rig.run_marker()


async def test_running_deployment_of_a_revoked_key_is_marked_and_kept(tmp_path: Path) -> None:
    async with await secured_rig(tmp_path) as rig:
        marker = await running(rig, 71)
        assert reported(rig) == []
        await revoke_and_hint(rig, 71)
        await eventually(lambda: reported(rig) == ["t1"], 10)
        assert live_with_marker(marker)  # --on-revoked keep (default): still running
        assert rig.manager.state(TARGET, "t1") is S.RUNNING


async def test_on_revoked_stop_stops_the_running_deployment(tmp_path: Path) -> None:
    async with await secured_rig(tmp_path, on_revoked="stop") as rig:
        marker = await running(rig, 72)
        await revoke_and_hint(rig, 72)
        await rig.wait_state("t1", S.STOPPED)
        assert "revoked" in rig.reason("t1")
        await eventually(lambda: live_with_marker(marker) == [])
        assert rig.deployment().stopped
        assert rig.manager.hellos[-1][1].extra["security"]["on_revoked"] == "stop"


async def test_deployment_of_another_key_is_neither_marked_nor_stopped(tmp_path: Path) -> None:
    async with await secured_rig(tmp_path, on_revoked="stop") as rig:
        marker = await running(rig, 73)
        await revoke_and_hint(rig, 74)
        await eventually(lambda: rig.state().trust.revocation_number == 1)
        health_seen = len(rig.manager.health)
        await eventually(lambda: len(rig.manager.health) > health_seen + 1, 10)
        assert reported(rig) == [] and live_with_marker(marker)
        assert rig.manager.state(TARGET, "t1") is S.RUNNING
