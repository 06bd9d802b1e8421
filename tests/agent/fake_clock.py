"""A monotonic clock the test moves by hand (for the re-send backoff tests)."""

from __future__ import annotations


class FakeClock:
    """Call it for the time; :meth:`advance` moves it on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: A jitter source giving a factor of exactly 1.0 (no jitter).
def no_jitter() -> float:
    return 0.5
