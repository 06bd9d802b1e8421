"""``swarmdeploy agent`` as a real process: registration over HTTP, CurveZMQ link to a tiny
test-side manager, a deployment, SIGKILL and restart (exactly once), SIGTERM (no orphans)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarmdeploy.agent.sandbox import detect_bwrap
from swarmdeploy.agent.state import load_state
from swarmdeploy.crypto.curve import CurveKeyPair, generate_keypair
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import ManagerLinkConfig
from swarmdeploy.transport.zmq import ZmqManagerTransport
from tests.agent.fake_manager import FakeManager
from tests.agent.helpers import eventually, kill_marked_now, live_commands, live_with_marker
from tests.agent.registration_server import (
    Script,
    new_ca,
    registration_answer,
    registration_server,
)

TARGET = "dev-p"


@dataclass
class World:
    manager: FakeManager
    transport: ZmqManagerTransport
    keys: CurveKeyPair
    data_dir: Path


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    keys = generate_keypair()
    transport = ZmqManagerTransport(ManagerLinkConfig(keys=keys, zmq_sub_port=0, zmq_pub_port=0))
    await transport.start()
    manager = FakeManager(transport, heartbeat_s=1.0)
    await manager.start()
    try:
        yield World(manager, transport, keys, tmp_path / "agent")
    finally:
        await manager.close()


def start_agent(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = Path(env["SWARMDEPLOY_AGENT_DATA_DIR"]).parent / "agent.log"
    with open(log, "ab") as err:  # a file, not a pipe: nobody has to drain it
        return subprocess.Popen(
            [sys.executable, "-m", "swarmdeploy.entry", "agent"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


async def ended(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> int:
    return await asyncio.to_thread(proc.wait, timeout_s)


def agent_env(world: World, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMDEPLOY_")}
    env.update(
        {
            "SWARMDEPLOY_AGENT_DATA_DIR": str(world.data_dir),
            "SWARMDEPLOY_AGENT_MANAGER": url,
            "SWARMDEPLOY_AGENT_TOKEN": "abcd-efgh-ijkl",
            "SWARMDEPLOY_AGENT_ID": TARGET,
            "SWARMDEPLOY_AGENT_LOG_BATCH_S": "0.1",
            "SWARMDEPLOY_AGENT_HEALTH_INTERVAL_S": "1",
            "SWARMDEPLOY_AGENT_STOP_GRACE_S": "1",
            "SWARMDEPLOY_AGENT_DISK_MARGIN_BYTES": "0",
            "SWARMDEPLOY_AGENT_LOW_DISK_BYTES": "0",
            "SWARMDEPLOY_AGENT_RECONNECT_IVL_MAX_S": "0.5",
            "SWARMDEPLOY_AGENT_INSECURE_LAB": "1",  # unsigned test tasks
        }
    )
    return env


def run_id(world: World) -> str:
    state = load_state(world.data_dir / "state.json")
    assert state is not None and state.deployment is not None
    return state.deployment.run_id or ""


async def test_agent_process_deploys_restarts_exactly_once_and_stops_cleanly(
    world: World,
) -> None:
    ports = world.transport.ports
    answer = registration_answer(TARGET, world.keys.public, new_ca(), ports)
    script = Script([(201, {}, answer)])
    markers: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with registration_server(script) as url:
            env = agent_env(world, url)
            procs.append(start_agent(env))
            await eventually(lambda: bool(script.requests), 20)
            await world.transport.allow(TARGET, script.requests[0].body["publicKey"])
            await eventually(lambda: bool(world.manager.hellos), 20)
            world.manager.add_task("t1", run=["exec sleep 300"])
            await world.manager.announce(TARGET, "t1")
            await eventually(lambda: world.manager.state(TARGET, "t1") is TargetState.RUNNING, 20)
            markers.append(run_id(world))
            await eventually(lambda: len(live_commands(markers[0])) == 1)

            procs[0].kill()  # a crash
            assert await ended(procs[0]) == -signal.SIGKILL
            if detect_bwrap() is None:  # left behind, killed by the next agent start
                assert len(live_commands(markers[0])) == 1
            else:  # bubblewrap's --die-with-parent: the sandbox dies with its agent
                await eventually(lambda: live_with_marker(markers[0]) == [])

            procs.append(start_agent(env))  # the spent token is ignored
            await eventually(lambda: len(world.manager.hellos) >= 2, 20)
            await eventually(lambda: run_id(world) != markers[0], 10)  # restarted after welcome
            markers.append(run_id(world))
            await eventually(lambda: len(live_commands(markers[1])) == 1, 10)
            assert live_with_marker(markers[0]) == []
            assert len(script.requests) == 1  # registered once

            procs[1].send_signal(signal.SIGTERM)
            assert await ended(procs[1]) == 0
            assert live_with_marker(markers[1]) == []
            await eventually(lambda: world.manager.byes == [TARGET])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for marker in markers:
            kill_marked_now(marker)
