"""Service-level fixtures: services wired to a scratch SQLite storage (``memory://``) and a
settable clock."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from swarmdeploy.manager.dispatch import MemoryDispatcher
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.blobs import MemoryBlobStore
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.registry import TargetRegistry
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.manager.services.tasks import TaskService
from swarmdeploy.storage.records import TargetRecord
from swarmdeploy.storage.sqlite import ScratchSqliteStorage


class FakeClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclasses.dataclass
class World:
    storage: ScratchSqliteStorage
    clock: FakeClock
    events: EventHub
    dispatcher: MemoryDispatcher
    metrics: Metrics
    logs: LogService
    registry: TargetRegistry
    states: TaskStates
    tasks: TaskService

    async def add_targets(self, ids: list[str], tags: tuple[str, ...] = ()) -> None:
        hashes = [f"{i:032d}".encode() for i in range(len(ids))]
        await self.storage.create_token_set(
            f"set-{ids[0]}", hashes, created_at=0, expires_at=self.clock.now + 10**9
        )
        for target_id, token_hash in zip(ids, hashes, strict=True):
            record = TargetRecord(
                id=target_id, curve_key=f"key-{target_id}", identity_key="id",
                created_at=0, updated_at=0, tags=tags,
            )  # fmt: skip
            await self.storage.register_target(token_hash, record, now=self.clock.now)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    storage = ScratchSqliteStorage()
    await storage.open()
    clock = FakeClock()
    events = EventHub(queue_size=10_000)
    dispatcher = MemoryDispatcher(max_per_target=1)
    metrics = Metrics()
    logs = LogService(storage, events=events, metrics=metrics, clock=clock)
    registry = TargetRegistry(
        storage, events=events, dispatcher=dispatcher, clock=clock, online_timeout_ms=60_000
    )
    states = TaskStates(storage, events=events, clock=clock)
    tasks = TaskService(
        storage,
        blobs=MemoryBlobStore(),
        events=events,
        dispatcher=dispatcher,
        logs=logs,
        states=states,
        clock=clock,
        audit=AuditLog(storage, clock=clock),
    )
    yield World(storage, clock, events, dispatcher, metrics, logs, registry, states, tasks)
    await storage.close()
