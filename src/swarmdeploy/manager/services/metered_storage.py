"""A :class:`~swarmdeploy.storage.base.Storage` that times every call (docs/metrics.md).

Every storage call is one transaction, so ``swarmdeploy_storage_operation_duration_seconds``
by ``operation`` (the method name: a fixed set) is the transaction latency, and
``swarmdeploy_storage_unavailable_total`` counts the calls that raised
:class:`~swarmdeploy.storage.errors.StorageUnavailable`. The storage package stays free of
metrics (it imports only protocol); the manager wraps whatever backend it was given.

The methods are generated from ``Storage.__abstractmethods__`` (all coroutines), so a method
added to the interface is timed without a change here. Anything else (backend-specific
attributes) is read from the wrapped storage.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import StorageUnavailable


def _timed(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def call(self: MeteredStorage, *args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return await getattr(self.inner, name)(*args, **kwargs)
        except StorageUnavailable:
            self.metrics.storage_unavailable.labels(name).inc()
            raise
        finally:
            self.metrics.storage_duration.labels(name).observe(time.perf_counter() - begun)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Timed ``{name}`` of the wrapped storage."
    return call


class MeteredStorage(Storage):
    """Delegates to ``inner`` and times each call (see the module docstring)."""

    def __init__(self, inner: Storage, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


for _name in sorted(Storage.__abstractmethods__):
    if inspect.iscoroutinefunction(getattr(Storage, _name)):
        setattr(MeteredStorage, _name, _timed(_name))
MeteredStorage.__abstractmethods__ = frozenset(
    n for n in Storage.__abstractmethods__ if not inspect.iscoroutinefunction(getattr(Storage, n))
)


def metered(storage: Storage, metrics: Metrics) -> Storage:
    """``storage`` timed into ``metrics`` (a storage already wrapped is returned as is)."""
    if isinstance(storage, MeteredStorage):
        return storage
    return cast(Storage, MeteredStorage(storage, metrics))  # type: ignore[abstract]
