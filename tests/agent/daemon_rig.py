"""Test rig: a real :class:`Daemon` against the fake manager over the in-memory transport.

The daemon object can be stopped and started again on the same data dir (an agent restart);
each start gets a fresh transport with the agent's keys. ``async with await make_rig(...)``
closes the rig (daemon stopped, manager closed) however the block ends; the methods below
the lifecycle ones are the steps the daemon tests share (deploy a task and wait for a
state, read what the manager was told).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.daemon import Daemon
from swarmdeploy.agent.sdnotify import Notifier
from swarmdeploy.agent.state import AgentState, Deployment, load_state, save_state
from swarmdeploy.agent.trust import Verifier, wall_clock_ms
from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.crypto.curve import CurveKeyPair, generate_keypair
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import AgentLinkConfig, ManagerTransport
from swarmdeploy.transport.memory import MemoryAgentTransport, MemoryManagerTransport, MemoryNetwork
from tests.agent.fake_manager import FakeManager, ServedTask
from tests.agent.helpers import eventually

TARGET = "dev-1"
FAST: dict[str, Any] = {
    "heartbeat_s": 0.2,
    "health_interval_s": 0.2,
    "log_batch_s": 0.05,
    "resend_s": 1.0,
    "stop_grace_s": 1.0,
    "disk_margin_bytes": 0,
    "low_disk_bytes": 0,
    "insecure_lab": True,  # unsigned test tasks; tests/security signs them
}


@dataclasses.dataclass
class Rig:
    """A fake manager, the agent's settings and (while started) its daemon."""

    manager: FakeManager
    network: MemoryNetwork | None
    settings: AgentSettings
    keys: CurveKeyPair
    manager_keys: CurveKeyPair
    anchors: AnchorSet = dataclasses.field(default_factory=AnchorSet)
    clock: Callable[[], int] | None = None  # the device clock (default: the real one)
    notifier: Notifier | None = None
    daemon: Daemon | None = None
    runner: asyncio.Task[None] | None = None
    target: str = TARGET
    ports: tuple[int, int] = (5557, 5556)

    def transport(self) -> Any:
        config = AgentLinkConfig(
            target_id=self.target,
            keys=self.keys,
            manager_public_key=self.manager_keys.public,
            manager_host="127.0.0.1",
            zmq_sub_port=self.ports[0],
            zmq_pub_port=self.ports[1],
            reconnect_ivl_s=0.05,
            reconnect_ivl_max_s=0.2,
        )
        if self.network is not None:
            return MemoryAgentTransport(self.network, config)
        from swarmdeploy.transport.zmq_agent import ZmqAgentTransport

        return ZmqAgentTransport(config)

    async def start(self) -> Daemon:
        """Start a daemon on the data dir (state loaded from disk) and wait until READY."""
        assert self.runner is None
        hellos = len(self.manager.hellos)
        verifier = Verifier(
            self.anchors,
            insecure_lab=self.settings.insecure_lab,
            clock=self.clock or wall_clock_ms,
        )
        self.daemon = Daemon(
            self.settings, self.transport(), verifier=verifier, notifier=self.notifier
        )
        self.runner = asyncio.create_task(self.daemon.run())
        ready = asyncio.ensure_future(self.daemon.wait_running())
        await asyncio.wait({ready, self.runner}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if self.runner.done():
            ready.cancel()
            self.runner.result()  # raises what start-up raised
        assert ready.done(), "the daemon did not start in time"
        await eventually(lambda: len(self.manager.hellos) > hellos)  # the route is up
        await asyncio.wait_for(self.daemon.wait_resumed(), 10)  # after the first welcome
        return self.daemon

    async def stop(self) -> None:
        """Clean shutdown of the daemon (SIGTERM path)."""
        if self.daemon is not None and self.runner is not None:
            self.daemon.request_shutdown()
            await asyncio.wait_for(self.runner, 20)
        self.daemon, self.runner = None, None

    async def close(self) -> None:
        """Stop the daemon (if started) and close the fake manager."""
        await self.stop()
        await self.manager.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- the agent's persisted state -----------------------------------------------------

    def state(self) -> AgentState:
        """The state file as the agent last saved it; fails the test when there is none."""
        state = load_state(self.settings.state_path)
        assert state is not None
        return state

    def save(self, state: AgentState) -> None:
        """Write ``state`` as the agent's state file (read by the next :meth:`start`)."""
        save_state(self.settings.state_path, state)

    def deployment(self) -> Deployment:
        """The persisted deployment; fails the test when there is none."""
        dep = self.state().deployment
        assert dep is not None
        return dep

    def run_marker(self) -> str:
        """The persisted deployment's run id (the marker its processes carry); fails the
        test when there is no deployment or it has no run id."""
        dep = self.state().deployment
        assert dep is not None and dep.run_id is not None
        return dep.run_id

    # --- tasks through the fake manager --------------------------------------------------

    async def deploy(self, task_id: str, until: TargetState, **task: Any) -> ServedTask:
        """Add ``task_id`` to the fake manager (``task`` as for ``FakeManager.add_task``),
        announce it and wait until the agent reports ``until``; returns the served task."""
        served = self.manager.add_task(task_id, **task)
        await self.announce(task_id, until)
        return served

    async def announce(self, task_id: str, until: TargetState) -> None:
        """Announce ``task_id`` (already added to the fake manager) to this agent and wait
        until it reports ``until``."""
        await self.manager.announce(self.target, task_id)
        await self.wait_state(task_id, until)

    async def wait_state(self, task_id: str, state: TargetState, timeout_s: float = 10) -> None:
        """Wait until the agent's latest report for ``task_id`` is ``state``; the failure
        names the states seen and the latest reason."""
        try:
            await eventually(lambda: self.manager.state(self.target, task_id) is state, timeout_s)
        except AssertionError:
            seen = self.manager.states_of(self.target, task_id)
            reason = self.reason(task_id)
            raise AssertionError(f"{task_id}: wanted {state}, saw {seen} ({reason})") from None

    def reason(self, task_id: str) -> str:
        """The reason of the agent's latest report for ``task_id``."""
        return self.manager.reason(self.target, task_id)

    def outputs(self, task_id: str) -> list[str]:
        """The output lines of ``task_id`` the manager has stored, in order."""
        return self.manager.outputs(self.target, task_id)

    async def output_seen(self, task_id: str, text: str, timeout_s: float = 5.0) -> None:
        """Wait until a line equal to ``text`` is among the outputs of ``task_id``."""
        await eventually(lambda: text in self.outputs(task_id), timeout_s)

    async def acked(self, request_id: str) -> tuple[bool, str]:
        """Wait for the agent's answer to request ``request_id``; returns (ok, message)."""
        await eventually(lambda: self.manager.ack_for(self.target, request_id) is not None)
        ack = self.manager.ack_for(self.target, request_id)
        assert ack is not None
        return ack.ok, ack.message


async def make_rig(tmp_path: Path, *, kind: str = "memory", **overrides: Any) -> Rig:
    """A started fake manager plus settings and a saved initial state for :data:`TARGET`."""
    manager_keys = generate_keypair()
    keys = generate_keypair()
    network: MemoryNetwork | None = None
    transport: ManagerTransport
    ports = (5557, 5556)
    if kind == "memory":
        network = MemoryNetwork()
        transport = MemoryManagerTransport(network)
    else:
        from swarmdeploy.transport.base import ManagerLinkConfig
        from swarmdeploy.transport.zmq import ZmqManagerTransport

        zmq_manager = ZmqManagerTransport(
            ManagerLinkConfig(keys=manager_keys, zmq_sub_port=0, zmq_pub_port=0)
        )
        transport = zmq_manager
    await transport.allow(TARGET, keys.public)
    await transport.start()
    if kind != "memory":
        ports = zmq_manager.ports
    manager = FakeManager(transport)
    await manager.start()
    data_dir = tmp_path / "agent"
    settings = AgentSettings(data_dir=data_dir, **{**FAST, **overrides})
    data_dir.mkdir(mode=0o700)
    save_state(settings.state_path, AgentState(agent_id=TARGET))
    return Rig(manager, network, settings, keys, manager_keys, ports=ports)
