"""``/metrics`` counts targets whose latest connectivity result (seed 000, docs/protocol.md
§10) fails each check -- a check, never a target, is the label (docs/metrics.md). On SQLite."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.registry import TargetRegistry
from swarmdeploy.manager.services.stats import StatsService, connectivity_failures
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import TargetRecord
from tests.manager.scrape import sample


class _Offline:
    def is_online(self, record: TargetRecord, now: int | None = None) -> bool:
        return False


def _report(**fields: Any) -> dict[str, Any]:
    result = {"ok": True, "link_up": True, "dns": True, "hosts": {}, "manager": True}
    result.update(fields)
    return {"disk_free_bytes": 1, "__extra__": {"connectivity": result}}


@pytest.fixture
async def storage(tmp_path: pathlib.Path) -> AsyncIterator[Storage]:
    store = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _targets(storage: Storage, health: dict[str, dict[str, Any] | None]) -> None:
    hashes = [f"{i:032d}".encode() for i in range(len(health))]
    await storage.create_token_set("set", hashes, created_at=0, expires_at=10**13)
    for (target_id, report), token_hash in zip(health.items(), hashes, strict=True):
        record = TargetRecord(id=target_id, curve_key=f"key-{target_id}", identity_key="id",
                              created_at=0, updated_at=0)  # fmt: skip
        await storage.register_target(token_hash, record, now=1)
        if report is not None:
            await storage.touch_target(target_id, seen_at=2, health=report)


async def test_targets_failing_each_check_are_counted(storage: Storage) -> None:
    await _targets(
        storage,
        {
            "fine": _report(),
            "behind-proxy": _report(dns=None),  # not checked: not a failure
            "no-link": _report(ok=False, link_up=False, dns=False, hosts={"a:1": False}),
            "one-host-down": _report(ok=False, hosts={"a:1": True, "b:2": False}),
            "was-offline": _report(manager=False),
            "no-connectivity-field": {"disk_free_bytes": 5},
            "never-reported": None,
        },
    )
    stats = StatsService(
        storage,
        registry=cast(TargetRegistry, _Offline()),
        metrics=Metrics(),
        events=EventHub(queue_size=10),
        cache_s=0.0,
    )
    text = await stats.exposition()
    assert sample(text, "swarmdeploy_targets_connectivity_reported") == 5
    for check, count in (("link", 1), ("dns", 1), ("hosts", 2), ("manager", 1)):
        assert sample(text, "swarmdeploy_targets_connectivity_failing", check=check) == count
    assert "fine" not in text and "no-link" not in text  # never a target id


def test_a_report_without_a_result_is_not_counted() -> None:
    assert connectivity_failures(None) is None
    assert connectivity_failures({"__extra__": {"connectivity": "garbage"}}) is None
    assert connectivity_failures(_report()) == frozenset()
