"""Signed tasks through the real agent daemon: each test changes exactly one thing of a task
that otherwise verifies and expects that refusal -- reported with its code, nothing of the
task installed, the previous deployment still running (docs/security.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmdeploy.agent.trust import NO_ANCHOR_REASON
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig
from tests.agent.fake_manager import ServedTask
from tests.agent.helpers import eventually, live_commands
from tests.agent.registration_server import new_ca
from tests.security.rig import (
    DAY_MS,
    deploy,
    now_ms,
    operator,
    revocation_list,
    secured_rig,
    sign,
)

S = TargetState
APP = {"app.sh": "echo started $(cat version)\nexec sleep 300\n", "version": "v1"}
V2 = {**APP, "version": "v2"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with await secured_rig(tmp_path) as rig:
        await rig.start()
        yield rig


async def running(rig: Rig, task_id: str = "good", sequence: int = 1) -> str:
    """A signed deployment that runs; returns its run marker."""
    await deploy(rig, task_id, S.RUNNING, files=APP, run=["sh app.sh"], sequence=sequence)
    await rig.output_seen(task_id, "started v1", 10)
    dep = rig.deployment()
    assert dep.task_id == task_id and dep.run_id
    return dep.run_id


def still_running(rig: Rig, task_id: str, marker: str) -> None:
    dep = rig.deployment()
    assert dep.task_id == task_id and dep.run_id == marker
    assert rig.manager.state(TARGET, task_id) is S.RUNNING
    assert live_commands(marker)  # its processes are alive


def held_back(rig: Rig) -> ServedTask:
    """Task ``bad`` (:data:`V2`, runs ``sh app.sh``) signed with sequence 2 by a fresh
    operator, not announced yet: the test changes one thing before :func:`refused`."""
    return sign(rig.manager.add_task("bad", files=V2, run=["sh app.sh"]), operator(), sequence=2)


def flipped(blob: bytes) -> bytes:
    """``blob`` with the lowest bit of its last byte flipped."""
    return blob[:-1] + bytes([blob[-1] ^ 1])


async def refused(rig: Rig, task_id: str, code: str) -> None:
    """Announce ``task_id``; it must fail to install with refusal ``code`` and leave nothing
    of the task on disk."""
    await rig.manager.announce(TARGET, task_id)
    await rig.wait_state(task_id, S.INSTALL_FAILED)
    assert rig.reason(task_id).startswith(f"refused: {code}:"), rig.reason(task_id)
    assert not (rig.settings.data_dir / "tasks" / task_id).exists()


async def test_signed_task_is_installed_and_runs(rig: Rig) -> None:
    marker = await running(rig)
    still_running(rig, "good", marker)
    assert any("signed by alice" in line for line in rig.outputs("good"))
    await eventually(lambda: bool(rig.manager.health))
    for extra in (rig.manager.health[-1][1].extra, rig.manager.hellos[-1][1].extra):
        assert extra["insecure_lab"] is False
        assert extra["security"]["mode"] == "verified"
        assert extra["security"]["sandbox"] in ("bwrap", "unprivileged_user", "none")
    await eventually(
        lambda: rig.manager.health[-1][1].extra["security"]["sequence"] == {"deploy": 1}
    )


async def test_tampered_artifact_byte_is_refused(rig: Rig) -> None:
    marker = await running(rig)
    bad = held_back(rig)
    ((digest, blob),) = bad.blobs.items()
    bad.blobs[digest] = flipped(blob)  # the blob store, not the signature
    await refused(rig, "bad", "artifact_mismatch")
    still_running(rig, "good", marker)


async def test_tampered_artifact_on_disk_at_resume_is_refused(rig: Rig) -> None:
    marker = await running(rig)
    ((digest, blob),) = held_back(rig).blobs.items()
    download = rig.settings.data_dir / "tasks" / "bad" / "download"
    download.mkdir(parents=True, mode=0o700)
    # A completed download from before an agent restart, changed on disk since.
    (download / f"{digest}.bin").write_bytes(flipped(blob))
    await refused(rig, "bad", "artifact_mismatch")
    still_running(rig, "good", marker)


async def test_tampered_command_is_refused(rig: Rig) -> None:
    marker = await running(rig)
    bad = held_back(rig)
    bad.manifest_bytes = bad.manifest_bytes.replace(b"sh app.sh", b"sh evil.sh")
    await refused(rig, "bad", "bad_signature")
    still_running(rig, "good", marker)


async def test_task_signed_by_unknown_key_is_refused(rig: Rig) -> None:
    marker = await running(rig)
    stranger = operator(ca=new_ca())  # a well-formed certificate from a CA we never trusted
    await deploy(rig, "bad", S.INSTALL_FAILED, files=V2, run=["true"], sequence=2, signer=stranger)
    assert rig.reason("bad").startswith("refused: unknown_signer:")
    still_running(rig, "good", marker)


async def test_task_signed_by_revoked_key_is_refused(rig: Rig) -> None:
    marker = await running(rig)
    assert rig.daemon is not None
    rig.daemon.verifier.apply_revocation_list(revocation_list(1, serials=frozenset({77})))
    revoked = operator(serial=77)
    await deploy(rig, "bad", S.INSTALL_FAILED, files=V2, run=["true"], sequence=2, signer=revoked)
    assert rig.reason("bad").startswith("refused: revoked_signer:")
    still_running(rig, "good", marker)


async def test_replayed_task_is_refused(rig: Rig) -> None:
    old = await deploy(rig, "t1", S.RUNNING, files=APP, run=["sh app.sh"], sequence=5)
    marker = await running(rig, "t2", sequence=6)
    assert rig.daemon is not None
    rig.daemon.state.history.pop("t1")  # forgotten (the history is bounded): no duplicate
    rig.manager.tasks["t1"] = old
    rig.manager.states.pop((TARGET, "t1"))
    await rig.manager.announce(TARGET, "t1")  # the same signed bytes again
    await rig.wait_state("t1", S.INSTALL_FAILED)
    assert rig.reason("t1").startswith("refused: rollback:")
    still_running(rig, "t2", marker)


async def test_older_task_delivered_late_is_refused(rig: Rig) -> None:
    marker = await running(rig, "t2", sequence=6)
    await deploy(rig, "t0", S.INSTALL_FAILED, files=V2, run=["true"], sequence=4)
    assert rig.reason("t0").startswith("refused: rollback:")
    still_running(rig, "t2", marker)


async def test_expired_task_is_refused(rig: Rig) -> None:
    marker = await running(rig)
    late = {"created_at_ms": now_ms() - 2 * DAY_MS, "expires_at_ms": now_ms() - 1000}
    signer = operator(not_before_ms=now_ms() - 5 * DAY_MS)  # valid when it signed
    await deploy(
        rig, "bad", S.INSTALL_FAILED, run=["true"], sequence=2, sign_fields=late, signer=signer
    )
    assert rig.reason("bad").startswith("refused: manifest_expired:")
    still_running(rig, "good", marker)


async def test_expired_task_is_refused_by_manager_time_when_device_clock_lags(
    tmp_path: Path,
) -> None:
    async with await secured_rig(tmp_path) as rig:
        rig.clock = lambda: now_ms() - 3 * DAY_MS  # no real-time clock: days behind
        await rig.start()  # the welcome carries the manager's (real) time
        late = {"created_at_ms": now_ms() - 2 * DAY_MS, "expires_at_ms": now_ms() - 60_000}
        signer = operator(not_before_ms=now_ms() - 5 * DAY_MS)
        await deploy(
            rig, "bad", S.INSTALL_FAILED, run=["true"], sequence=2, sign_fields=late, signer=signer
        )
        assert rig.reason("bad").startswith("refused: manifest_expired:")


async def test_task_for_another_target_is_refused(rig: Rig) -> None:
    marker = await running(rig)
    other = {"target_ids": ["robot-9"], "target_tags": ["warehouse"]}
    await deploy(
        rig, "bad", S.INSTALL_FAILED, files=V2, run=["true"], sequence=2, sign_fields=other
    )
    assert rig.reason("bad").startswith("refused: wrong_target:")
    still_running(rig, "good", marker)
    by_tag = {"target_ids": [], "target_tags": ["field"]}  # this target's tag: accepted
    await deploy(rig, "tagged", S.EXITED, run=["true"], sequence=3, sign_fields=by_tag)


async def test_unsigned_task_is_refused_when_anchors_are_provisioned(rig: Rig) -> None:
    marker = await running(rig)
    rig.manager.add_task("bad", files=V2, run=["true"])
    await refused(rig, "bad", "unsigned")
    still_running(rig, "good", marker)


async def test_agent_without_trust_anchor_declines_every_task(tmp_path: Path) -> None:
    async with await secured_rig(tmp_path) as rig:
        rig.anchors = type(rig.anchors)()  # provisioned without --trust-anchor, no lab mode
        await rig.start()
        await deploy(rig, "t1", S.DECLINED, run=["true"], sequence=1)
        assert rig.reason("t1") == NO_ANCHOR_REASON
        hello = rig.manager.hellos[-1][1]
        assert hello.extra["insecure_lab"] is False
        assert hello.extra["security"]["mode"] == "no_anchor"


async def test_fast_forward_by_a_stolen_key_is_undone_by_its_revocation(rig: Rig) -> None:
    await running(rig, "t1", sequence=5)
    stolen = operator(serial=88)
    await deploy(rig, "ff", S.RUNNING, files=APP, run=["sh app.sh"], sequence=2**62, signer=stolen)
    await deploy(rig, "blocked", S.INSTALL_FAILED, files=V2, run=["true"], sequence=6)
    assert rig.reason("blocked").startswith("refused: rollback:")  # the attack works ...
    assert rig.daemon is not None
    rig.daemon.verifier.apply_revocation_list(revocation_list(1, serials=frozenset({88})))
    assert rig.state().trust.last_sequence["deploy"] == 5  # ... until the key is revoked
    marker = await running(rig, "legit", sequence=7)
    await deploy(rig, "replayed", S.INSTALL_FAILED, files=V2, run=["true"], sequence=5)
    assert rig.reason("replayed").startswith("refused: rollback:")  # older ones stay refused
    still_running(rig, "legit", marker)
