"""Verification before every start (agent restart, autoRestart): an installed deployment
whose files, stored manifest or signer changed since the install is not started -- reported
``failed`` with the check's code, nothing left in the process table, and it stays that way
over further restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmdeploy.agent import confine
from swarmdeploy.agent.manifests import TASK_FILE
from swarmdeploy.agent.taskdirs import tree_digest
from swarmdeploy.protocol.messages import Task, encode
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig
from tests.agent.helpers import eventually, live_commands, live_with_marker
from tests.crypto.signing_rig import Operator
from tests.security.rig import (
    deploy,
    operator,
    revocation_list,
    secured_rig,
    sign,
)

S = TargetState
APP = {"app.sh": "echo started\nexec sleep 300\n"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with await secured_rig(tmp_path) as rig:
        yield rig


async def installed_and_stopped(rig: Rig, signer: Operator | None = None) -> str:
    """Deploy a task signed by ``signer`` (default a fresh operator), see it run, then stop
    the agent; returns the run marker."""
    await rig.start()
    await deploy(rig, "t1", S.RUNNING, files=APP, run=["sh app.sh"], sequence=3, signer=signer)
    await rig.output_seen("t1", "started", 10)
    dep = rig.deployment()
    assert dep.run_id
    await rig.stop()
    assert live_with_marker(dep.run_id) == []
    return dep.run_id


async def refused_at_start(rig: Rig, code: str, old_marker: str) -> None:
    await rig.start()
    await rig.wait_state("t1", S.FAILED)
    assert rig.reason("t1").startswith(f"refused: {code}:"), rig.reason("t1")
    dep = rig.deployment()
    assert dep.stopped and dep.process_groups == []
    assert dep.run_id == old_marker  # no new run was even prepared
    assert live_with_marker(old_marker) == []
    await rig.stop()
    await rig.start()  # and it stays refused: nothing starts after another restart
    assert rig.manager.state(TARGET, "t1") is S.FAILED
    assert live_with_marker(old_marker) == []
    assert (rig.state().deployment or dep).run_id == old_marker


async def test_unchanged_deployment_starts_again_after_restart(rig: Rig) -> None:
    marker = await installed_and_stopped(rig)
    await rig.start()
    dep = rig.deployment()
    assert dep.run_id not in (None, marker)
    await eventually(lambda: bool(live_commands(dep.run_id or "")))
    assert rig.manager.state(TARGET, "t1") is S.RUNNING


async def test_the_tree_is_hashed_at_the_seal_and_again_at_every_later_start(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The activation right after the install takes the digest its seal just computed; a
    start after an agent restart hashes the installed tree again."""
    hashed: list[Path] = []

    def counting(top: Path) -> str:
        hashed.append(top)
        return tree_digest(top)

    monkeypatch.setattr(confine, "tree_digest", counting)
    await installed_and_stopped(rig)
    assert len(hashed) == 1  # the seal's
    await rig.start()
    await rig.wait_state("t1", S.RUNNING)
    await eventually(lambda: len(hashed) == 2)
    assert hashed[0] == hashed[1]


async def test_modified_installed_file_is_not_started_after_restart(rig: Rig) -> None:
    marker = await installed_and_stopped(rig)
    app = rig.settings.data_dir / "tasks" / "t1" / "app" / "app.sh"
    app.write_text("echo pwned\nexec sleep 300\n")
    await refused_at_start(rig, "tampered_install", marker)
    assert "pwned" not in rig.outputs("t1")


async def test_added_installed_file_is_not_started_after_restart(rig: Rig) -> None:
    marker = await installed_and_stopped(rig)
    (rig.settings.data_dir / "tasks" / "t1" / "app" / "preload.so").write_bytes(b"\x7fELF")
    await refused_at_start(rig, "tampered_install", marker)


async def test_key_revoked_since_install_stops_the_next_start(rig: Rig) -> None:
    marker = await installed_and_stopped(rig, signer=operator(serial=91))
    (rig.settings.data_dir / "revocations").write_bytes(revocation_list(1, serials=frozenset({91})))
    await refused_at_start(rig, "revoked_signer", marker)


async def test_stored_manifest_swapped_for_another_signed_one_is_refused(rig: Rig) -> None:
    marker = await installed_and_stopped(rig)
    other = sign(rig.manager.add_task("t1", run=["sh /tmp/x"]), operator(), sequence=2)
    swapped = Task(
        task_id="t1",
        manifest=other.manifest_bytes,
        signature=other.signature,
        certificate=other.certificate,
    )
    (rig.settings.data_dir / "tasks" / "t1" / TASK_FILE).write_bytes(encode(swapped))
    await refused_at_start(rig, "rollback", marker)


async def test_auto_restart_checks_again_before_restarting(rig: Rig) -> None:
    await rig.start()
    crashing = {"app.sh": "echo up $(cat config)\nsleep 0.3\nexit 1\n", "config": "v1"}
    await deploy(
        rig, "t1", S.RUNNING, files=crashing, run=["sh app.sh"], auto_restart=True, sequence=3
    )
    await rig.output_seen("t1", "up v1", 10)
    config = rig.settings.data_dir / "tasks" / "t1" / "app" / "config"
    config.write_text("pwned")  # before the crash (0.3 s) and its restart (after 1 s)
    await rig.wait_state("t1", S.FAILED)
    assert rig.reason("t1").startswith("refused: tampered_install:"), rig.reason("t1")
    assert "up pwned" not in rig.outputs("t1")
    dep = rig.deployment()
    assert dep.stopped
    await eventually(lambda: live_with_marker(dep.run_id or "") == [])
