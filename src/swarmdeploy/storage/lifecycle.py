"""Lifecycle state shared by the backends: calls are refused unless the storage is open."""

from __future__ import annotations

import enum

from swarmdeploy.storage.errors import StorageUnavailable


class StorageState(enum.Enum):
    """Where a backend object stands: ``NEW -> OPEN -> CLOSED`` (``open()`` again reopens)."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def require_open(state: StorageState) -> None:
    """Raise :class:`StorageUnavailable` unless ``state`` is ``OPEN``."""
    if state is not StorageState.OPEN:
        raise StorageUnavailable(f"storage is {state.value}, not open")
