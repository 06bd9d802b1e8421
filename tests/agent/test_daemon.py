"""The daemon against a fake manager over the in-memory transport: deployment end to end."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from swarmdeploy.agent.daemon import Daemon
from swarmdeploy.agent.sdnotify import Notifier
from swarmdeploy.agent.trust import REVOCATIONS_FILE, Verifier
from swarmdeploy.crypto.operator import RevocationList, ca_issuer, issue_revocation_list
from swarmdeploy.protocol.messages import Stop
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig, make_rig
from tests.agent.helpers import eventually, live_with_marker
from tests.crypto import signing_rig

S = TargetState
APP = {"app.sh": "echo started $(cat version)\nexec sleep 300\n", "version": "v1"}


async def test_announced_task_is_transferred_installed_and_running(rig: Rig) -> None:
    await rig.start()
    await rig.deploy(
        "t1", S.RUNNING, files=APP, install=["test -f app.sh", "echo installing"], run=["sh app.sh"]
    )
    assert rig.manager.states_of(TARGET, "t1") == [
        S.ACCEPTED,
        S.TRANSFERRING,
        S.INSTALLING,
        S.INSTALLED,
        S.RUNNING,
    ]
    await rig.output_seen("t1", "started v1")
    assert "installing" in rig.outputs("t1")
    marker = rig.run_marker()
    assert live_with_marker(marker)
    await rig.stop()
    assert live_with_marker(marker) == []  # an agent shutdown leaves no orphan


async def test_install_failure_keeps_the_previous_deployment_running(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("old", S.RUNNING, files=APP, run=["sh app.sh"])
    marker = rig.run_marker()
    new = {**APP, "version": "v2"}
    await rig.deploy("new", S.INSTALL_FAILED, files=new, install=["true", "exit 3", "true"])
    assert "'exit 3' exited 3" in rig.reason("new")
    assert rig.manager.state(TARGET, "old") is S.RUNNING
    assert live_with_marker(marker)
    assert rig.deployment().task_id == "old"
    assert not (rig.settings.data_dir / "tasks" / "new").exists()


async def test_successful_install_replaces_the_running_deployment(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("old", S.RUNNING, files=APP, run=["sh app.sh"])
    old_marker = rig.run_marker()
    await rig.deploy("new", S.RUNNING, files={**APP, "version": "v2"}, run=["sh app.sh"])
    await rig.wait_state("old", S.STOPPED)
    assert live_with_marker(old_marker) == []
    assert live_with_marker(rig.run_marker())
    assert not (rig.settings.data_dir / "tasks" / "old").exists()


async def test_stop_request_leaves_no_process_behind(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("t1", S.RUNNING, files=APP, run=["sleep 300 & sleep 300", "sh app.sh"])
    marker = rig.run_marker()
    await eventually(lambda: len(live_with_marker(marker)) >= 4)
    assert await rig.manager.send(TARGET, Stop(request_id="r1", task_id="t1"))
    await rig.wait_state("t1", S.STOPPED)
    ok, message = await rig.acked("r1")
    assert ok and "t1" in message
    assert live_with_marker(marker) == []
    assert rig.deployment().stopped


async def test_run_commands_that_end_report_exited_or_failed(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("ok", S.EXITED, run=["true", "echo done"])
    await rig.deploy("bad", S.FAILED, run=["true", "exit 4"])
    assert "'exit 4' ended with exit status 4" in rig.reason("bad")


async def test_deployment_over_curve_zeromq_ends_with_bye(tmp_path: Path) -> None:
    async with await make_rig(tmp_path, kind="zmq") as rig:
        await rig.start()
        await rig.deploy("t1", S.RUNNING, files=APP, run=["sh app.sh"])
        await rig.output_seen("t1", "started v1")
        await eventually(lambda: bool(rig.manager.health) and bool(rig.manager.heartbeats))
        _, health = rig.manager.health[-1]
        assert health.mem_total_bytes > 0 and health.agent_rss_bytes > 0 and health.interfaces
        marker = rig.run_marker()
        await rig.stop()
        assert live_with_marker(marker) == []
        await eventually(lambda: rig.manager.byes == [TARGET])


async def test_systemd_hears_ready_watchdog_status_and_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        rig = await make_rig(tmp_path)
        rig.notifier = Notifier(str(tmp_path / "notify"))
        try:
            await rig.start()
            seen: list[str] = []
            while not any("WATCHDOG=1" in m for m in seen) or not any(
                "connected" in m for m in seen
            ):
                seen.append((await asyncio.to_thread(sock.recv, 4096)).decode())
            assert seen[0].startswith("READY=1\nSTATUS=agent dev-1 started")
            await rig.stop()
            rest = []
            while "STOPPING=1" not in rest:
                rest.append((await asyncio.to_thread(sock.recv, 4096)).decode())
        finally:
            await rig.close()
            rig.notifier.close()


async def test_health_is_reported_as_soon_as_the_agent_is_connected(tmp_path: Path) -> None:
    async with await make_rig(tmp_path, health_interval_s=60) as rig:
        await rig.start()
        await eventually(lambda: bool(rig.manager.health))
        assert rig.manager.health[0][1].manager_reachable


async def test_low_disk_declines_tasks_and_is_reported_in_health(tmp_path: Path) -> None:
    async with await make_rig(tmp_path, low_disk_bytes=1 << 62) as rig:
        await rig.start()
        await eventually(lambda: bool(rig.manager.health))
        assert rig.manager.health[-1][1].disk_low
        assert rig.daemon is not None and rig.daemon.health.disk_low  # fetching is paused
        await rig.deploy("t1", S.DECLINED, run=["true"])
        assert "disk is low" in rig.reason("t1")


async def test_auto_restart_restarts_a_crashed_run_command(rig: Rig) -> None:
    await rig.start()
    await rig.deploy("t1", S.RUNNING, run=["echo try; exit 3"], auto_restart=True)
    await eventually(lambda: any("crashed (exit status 3)" in o for o in rig.outputs("t1")))
    await eventually(lambda: rig.outputs("t1").count("try") >= 2, timeout_s=5)
    assert rig.manager.state(TARGET, "t1") is S.RUNNING  # still supervised, not failed
    await rig.manager.send(TARGET, Stop(request_id="s1", task_id="t1"))
    await rig.wait_state("t1", S.STOPPED)


async def test_welcome_revocation_list_is_applied_and_kept(rig: Rig) -> None:
    ca = signing_rig.authority()
    crl = RevocationList(
        issuer=ca_issuer(ca.public_key_raw), number=4, issued_at_ms=1, serials=frozenset({7})
    )
    rig.anchors = signing_rig.anchors()
    rig.manager.revocations = issue_revocation_list(crl, ca.sign)
    daemon = await rig.start()
    await eventually(lambda: daemon.verifier.trust.revocation_number == 4)
    assert (rig.settings.data_dir / REVOCATIONS_FILE).read_bytes() == rig.manager.revocations
    assert rig.state().trust.revocation_number == 4


async def test_welcome_with_a_forged_revocation_list_keeps_the_agent_running(rig: Rig) -> None:
    rig.anchors = signing_rig.anchors()
    rig.manager.revocations = b'{"not": "a list"}'
    daemon = await rig.start()
    await rig.deploy("t1", S.RUNNING, files=APP, run=["sh app.sh"])
    assert daemon.verifier.trust.revocation_number == 0
    assert not (rig.settings.data_dir / REVOCATIONS_FILE).exists()


async def test_freed_memory_is_released_after_start_up_and_when_a_task_settles(rig: Rig) -> None:
    releases: list[str] = []
    verifier = Verifier(rig.anchors, insecure_lab=True)
    rig.daemon = Daemon(
        rig.settings,
        rig.transport(),
        verifier=verifier,
        release_memory=lambda: releases.append("released"),
    )
    rig.runner = asyncio.create_task(rig.daemon.run())
    await asyncio.wait_for(rig.daemon.wait_running(), 10)
    await eventually(lambda: len(releases) == 1 and len(rig.manager.hellos) == 1)  # started
    await rig.deploy("t1", S.RUNNING, files=APP, install=["echo installing"], run=["sh app.sh"])
    await eventually(lambda: len(releases) == 2)  # running: once, not per stage on the way
    assert await rig.manager.send(TARGET, Stop(request_id="r1", task_id="t1"))
    await rig.wait_state("t1", S.STOPPED)
    await eventually(lambda: len(releases) == 3)  # final
