"""Two-stage delivery through the daemon: assessment, manifest checks, chunked transfer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmdeploy.agent import processor
from swarmdeploy.agent.deployment import DeploymentSupervisor
from swarmdeploy.protocol.messages import Announce
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig, make_rig
from tests.agent.fake_manager import tar_gz
from tests.agent.helpers import eventually

S = TargetState
APP = {"app.sh": "echo up\nexec sleep 300\n"}


async def test_announcement_larger_than_the_data_limit_is_declined(tmp_path: Path) -> None:
    async with await make_rig(tmp_path, max_data_bytes=1 << 20) as rig:
        await rig.start()
        rig.manager.add_task("big", files=APP, run=["sh app.sh"])
        await rig.manager.announce(TARGET, "big", size_bytes=5_000_000)
        await rig.wait_state("big", S.DECLINED)
        assert "not enough disk" in rig.reason("big")
        assert not rig.manager.chunk_requests
        await rig.deploy("small", S.EXITED, files=APP, run=["true"])


async def test_announcement_for_another_architecture_is_declined(rig: Rig) -> None:
    await rig.start()
    rig.manager.add_task("t1", run=["true"])
    await rig.manager.send(TARGET, Announce(task_id="t1", arch=["riscv128"]))
    await rig.wait_state("t1", S.DECLINED)
    assert "riscv128" in rig.reason("t1")


async def test_repeated_announcement_is_answered_without_a_second_delivery(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("t1", S.RUNNING, files=APP, run=["sh app.sh"])
    await rig.manager.announce(TARGET, "t1")
    await eventually(lambda: rig.manager.states_of(TARGET, "t1").count(S.RUNNING) == 2)
    assert rig.manager.states_of(TARGET, "t1").count(S.ACCEPTED) == 1
    assert len(rig.manager.served_chunks) == 1


async def test_lost_chunk_answers_are_requested_again(rig: Rig) -> None:
    await rig.start()
    payload = tar_gz({**APP, "blob": os.urandom(20_000)})
    rig.manager.add_task("t1", archive=payload, run=["sh app.sh"], chunk_bytes=1024)
    rig.manager.drop_chunks = 3
    await rig.announce("t1", S.RUNNING)
    count = -(-len(payload) // 1024)
    assert sorted(rig.manager.served_chunks) == list(range(count))  # each chunk served once


async def test_transfer_resumes_after_an_agent_restart_with_missing_chunks_only(rig: Rig) -> None:
    await rig.start()
    payload = tar_gz({**APP, "blob": os.urandom(20_000)})
    rig.manager.add_task("t1", archive=payload, run=["sh app.sh"], chunk_bytes=1024)
    rig.manager.serve_limit = 6
    await rig.manager.announce(TARGET, "t1")
    await eventually(lambda: len(rig.manager.served_chunks) == 6)
    await rig.stop()
    assert rig.state().history["t1"] is S.TRANSFERRING
    before = set(rig.manager.served_chunks)
    asked_before = len(rig.manager.chunk_requests)
    rig.manager.serve_limit = None
    await rig.start()
    await rig.wait_state("t1", S.RUNNING)
    asked_after = {r.index for r in rig.manager.chunk_requests[asked_before:]}
    assert not asked_after & before  # nothing received before the restart is fetched again
    assert asked_after | before == set(range(-(-len(payload) // 1024)))


async def test_corrupted_payload_is_fetched_again_once_then_fails(rig: Rig) -> None:
    await rig.start()
    rig.manager.add_task("t1", files=APP, run=["sh app.sh"])
    rig.manager.corrupt_chunks = 1
    await rig.announce("t1", S.RUNNING)
    rig.manager.add_task("t2", files=APP, run=["sh app.sh"])
    rig.manager.corrupt_chunks = 2
    await rig.announce("t2", S.INSTALL_FAILED)
    assert "digest mismatch" in rig.reason("t2")
    assert rig.manager.state(TARGET, "t1") is S.RUNNING


async def test_manifest_for_another_task_is_refused(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("t1", S.INSTALL_FAILED, run=["true"], manifest_task_id="other")
    assert rig.reason("t1").startswith("refused: wrong_task:")


async def test_busy_answer_to_fetch_is_asked_again(rig: Rig) -> None:
    await rig.start()
    rig.manager.add_task("t1", run=["true"])
    rig.manager.busy_fetches = 1
    await rig.announce("t1", S.EXITED)
    assert rig.manager.busy_fetches == 0


async def test_unknown_task_on_fetch_fails_the_task(rig: Rig) -> None:
    await rig.start()
    await rig.manager.send(TARGET, Announce(task_id="ghost"))
    await rig.wait_state("ghost", S.INSTALL_FAILED)
    assert "refused the task" in rig.reason("ghost")


async def test_hostile_archive_fails_the_install(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("t1", S.INSTALL_FAILED, files={"../escape.sh": "echo owned"}, run=["true"])
    assert ".." in rig.reason("t1")
    assert not (rig.settings.data_dir / "tasks" / "escape.sh").exists()


async def test_internal_error_during_install_reaches_the_manager_as_install_failed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("unpacker bug")

    monkeypatch.setattr(processor, "unpack_all", broken)
    await rig.start()
    await rig.deploy("t1", S.INSTALL_FAILED, files=APP, run=["sh app.sh"])
    assert rig.reason("t1") == "internal error in the agent: RuntimeError('unpacker bug')"
    assert rig.manager.states_of(TARGET, "t1")[-2:] == [S.INSTALLING, S.INSTALL_FAILED]
    monkeypatch.undo()
    await rig.deploy("t2", S.RUNNING, files=APP, run=["sh app.sh"])  # the worker goes on


async def test_internal_error_at_activation_reaches_the_manager_as_failed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object, **__: object) -> bool:
        raise KeyError("supervisor bug")

    monkeypatch.setattr(DeploymentSupervisor, "activate", broken)
    await rig.start()
    await rig.deploy("t1", S.FAILED, files=APP, run=["sh app.sh"])
    assert "internal error in the agent: KeyError('supervisor bug')" in rig.reason("t1")
    assert S.RUNNING not in rig.manager.states_of(TARGET, "t1")
