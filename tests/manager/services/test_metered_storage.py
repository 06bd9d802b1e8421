"""Storage calls timed by operation; ``StorageUnavailable`` counted; nothing else changes."""

from __future__ import annotations

import pytest

from swarmdeploy.manager.services.metered_storage import MeteredStorage, metered
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import StorageUnavailable
from swarmdeploy.storage.sqlite import ScratchSqliteStorage
from tests.manager.scrape import sample


class DownForPings(ScratchSqliteStorage):
    async def ping(self) -> None:
        raise StorageUnavailable("database down")


async def test_calls_are_timed_and_outages_counted() -> None:
    metrics = Metrics()
    inner = DownForPings()
    storage = metered(inner, metrics)
    await storage.open()
    assert await storage.count_targets() == 0
    with pytest.raises(StorageUnavailable):
        await storage.ping()
    text = metrics.render().decode()
    name = "swarmdeploy_storage_operation_duration_seconds_count"
    assert sample(text, name, operation="count_targets") == 1
    assert sample(text, name, operation="ping") == 1
    assert sample(text, "swarmdeploy_storage_unavailable_total", operation="ping") == 1
    assert sample(text, "swarmdeploy_storage_unavailable_total", operation="count_targets") is None
    assert metered(storage, metrics) is storage
    await storage.close()


def test_every_interface_method_is_wrapped() -> None:
    for name in Storage.__abstractmethods__:
        assert getattr(MeteredStorage, name).__qualname__ == name, name
    assert not MeteredStorage.__abstractmethods__
