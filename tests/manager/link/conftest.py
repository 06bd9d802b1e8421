"""A manager app on real SQLite with its agent link on the in-memory transport, and fake
agents written for the tests that speak the protocol through ``MemoryAgentTransport``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from swarmdeploy.crypto import curve
from swarmdeploy.manager.clock import wall_ms
from swarmdeploy.manager.link import LinkServer
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import AgentLinkConfig, LinkEvent, LinkState
from swarmdeploy.transport.memory import MemoryAgentTransport, MemoryManagerTransport, MemoryNetwork
from tests.manager.conftest import Api, identity_key_b64, make_settings, running_api

TIMEOUT_S = 5.0
M = TypeVar("M", bound=m.MessageBase)


class ShiftClock:
    """Wall-clock milliseconds plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return wall_ms() + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


def zip_b64(files: dict[str, str] | None = None) -> str:
    """A base64 zip archive holding ``files``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in (files or {"app.py": "print('hello')\n"}).items():
            zf.writestr(name, text)
    return base64.b64encode(buf.getvalue()).decode()


def deploy_doc(
    *, ids: list[str] | None = None, tags: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """A deploy task descriptor with an inline archive."""
    target: dict[str, Any] = {}
    if ids:
        target["ids"] = ids
    if tags:
        target["tags"] = tags
    doc: dict[str, Any] = {
        "description": "link test",
        "source": {"zip": zip_b64()},
        "deploy": {
            "install": {"commands": ["true"]},
            "run": {"commands": ["python3 app.py"], "autoRestart": True},
            "target": target,
        },
    }
    doc.update(extra)
    return doc


class FakeAgent:
    """An agent that speaks the protocol by hand: it says ``hello`` on every connection and
    keeps every message it receives for the test to take with :meth:`take`."""

    def __init__(
        self,
        network: MemoryNetwork,
        target_id: str,
        manager_key: str,
        keys: curve.CurveKeyPair | None = None,
    ) -> None:
        self.id = target_id
        self.keys = keys or curve.generate_keypair()
        self.transport = MemoryAgentTransport(
            network,
            AgentLinkConfig(target_id=target_id, keys=self.keys, manager_public_key=manager_key),
        )
        self.received: list[m.Message] = []
        self.log: list[m.Message] = []  # everything received, in order (never taken)
        self.events: list[LinkEvent] = []
        self.hello_fields: dict[str, Any] = {}
        self.auto_hello = True
        self._probes = 0
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.transport.connect()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            item = await self.transport.recv()
            if item is None:
                continue
            if isinstance(item, LinkEvent):
                self.events.append(item)
                if item.state is LinkState.CLOSED:
                    return
                if item.state is LinkState.CONNECTED and self.auto_hello:
                    await self.hello()
            else:
                self.received.append(item)
                self.log.append(item)
            self._changed.set()

    async def hello(self, **fields: Any) -> None:
        values = {**self.hello_fields, **fields}
        assert await self.transport.send(m.Hello(agent_version="test", **values))

    async def send(self, msg: m.Message) -> None:
        assert await self.transport.send(msg), f"could not send {msg!r}"

    async def take(
        self,
        kind: type[M],
        where: Callable[[M], bool] = lambda _: True,
        timeout_s: float = TIMEOUT_S,
    ) -> M:
        """Remove and return the first received message of ``kind`` matching ``where``."""
        async with asyncio.timeout(timeout_s):
            while True:
                for i, msg in enumerate(self.received):
                    if isinstance(msg, kind) and where(msg):
                        del self.received[i]
                        return msg
                self._changed.clear()
                await self._changed.wait()

    async def sync(self) -> None:
        """Wait until the manager has handled everything this agent sent (and every job
        queued for it before): the worker of a target is serial, so the answer to a probe
        comes after all of it."""
        self._probes += 1
        probe = f"probe-{self._probes}"
        await self.send(m.UnknownMessage(type=probe))
        await self.take(m.Error, lambda e: e.in_reply_to == probe)

    def count(self, kind: type[m.MessageBase]) -> int:
        return sum(isinstance(x, kind) for x in self.received)

    async def report(self, task_id: str, state: TargetState, reason: str = "") -> m.StateAck:
        await self.send(m.StateReport(task_id=task_id, state=state, reason=reason))
        return await self.take(m.StateAck, lambda a: a.task_id == task_id and a.state is state)

    async def close(self) -> None:
        await self.transport.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@dataclasses.dataclass
class Rig:
    """A running manager with its in-memory agent network."""

    api: Api
    network: MemoryNetwork
    clock: ShiftClock
    agents: list[FakeAgent] = dataclasses.field(default_factory=list)

    def connect_as(self, target_id: str, keys: curve.CurveKeyPair) -> FakeAgent:
        """A fake agent for an already registered target (not started)."""
        agent = FakeAgent(self.network, target_id, self.api.services.keys.curve.public, keys)
        self.agents.append(agent)
        return agent

    @property
    def link(self) -> LinkServer:
        link = self.api.app.state.link
        assert isinstance(link, LinkServer)
        return link

    async def agent(
        self, target_id: str, *, tags: list[str] | None = None, start: bool = True
    ) -> FakeAgent:
        """Register a target through the API and (optionally) connect its fake agent."""
        agent = FakeAgent(self.network, target_id, self.api.services.keys.curve.public)
        token = (await self.api.tokens(1, name=f"set-{target_id}"))[0]
        body = {
            "id": target_id,
            "tags": tags or [],
            "publicKey": agent.keys.public,
            "identityKey": identity_key_b64(),
        }
        r = await self.api.client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
        assert r.status_code == 201, r.text
        self.agents.append(agent)
        if start:
            await agent.start()
            await agent.take(m.Welcome)
        return agent

    async def create_task(self, doc: dict[str, Any]) -> str:
        r = await self.api.client.post("/tasks", json=doc)
        assert r.status_code == 201, r.text
        task_id = r.json()["id"]
        assert isinstance(task_id, str)
        return task_id

    async def row_state(self, task_id: str, target_id: str) -> str:
        rows = await self.api.storage.task_targets(task_id)
        return next(r.state for r in rows if r.target_id == target_id)

    async def wait_row(self, task_id: str, target_id: str, state: str) -> None:
        events = self.api.services.events
        sub = events.subscribe(["taskUpdated"], task=task_id, target=target_id)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                while await self.row_state(task_id, target_id) != state:
                    await sub.get()  # subscribed before the check: no change is missed
        finally:
            sub.close()

    async def settle(self) -> None:
        """Wait until the link's workers have nothing left to do (for work not started by
        an agent message; after those use :meth:`FakeAgent.sync`)."""
        await asyncio.sleep(0.01)
        await self.link.workers.wait_idle(TIMEOUT_S)


@contextlib.asynccontextmanager
async def link_rig(
    tmp_path: Path, *, app: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[Rig]:
    """A :class:`Rig`; ``overrides`` go to the settings, ``app`` to ``create_app``."""
    network = MemoryNetwork()
    clock = ShiftClock()
    settings = make_settings(tmp_path, **overrides)
    transport = MemoryManagerTransport(network)
    async with running_api(settings, transport=transport, clock=clock, **(app or {})) as api:
        rig = Rig(api, network, clock)
        try:
            yield rig
        finally:
            for agent in rig.agents:
                await agent.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with link_rig(tmp_path) as running:
        yield running
