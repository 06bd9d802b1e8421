"""Time sources. Services take a ``Clock`` so tests can drive time explicitly."""

from __future__ import annotations

import time
from collections.abc import Callable

#: A function returning the current time in milliseconds since the Unix epoch.
Clock = Callable[[], int]


def wall_ms() -> int:
    """The current wall-clock time in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
