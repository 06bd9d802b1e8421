"""A monotonic clock the test moves by hand (for the re-send backoff tests)."""

from __future__ import annotations


class FakeClock:
    """Call it for the time; :meth:`advance` moves it on. With ``step`` every reading also
    moves it on by ``step`` (for a loop that reads the clock once per iteration)."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now = round(self.now + self.step, 6)
        return now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: A jitter source giving a factor of exactly 1.0 (no jitter).
def no_jitter() -> float:
    return 0.5
