"""Exponential backoff with jitter for the agent's re-sends (docs/protocol.md §6).

One :class:`Backoff` times the re-sends of one outstanding item (a state report set, a chunk
request, a log batch, a ``fetch_task``). After a send the item is due again after the base
interval (``--resend-s``); every further re-send of the same item waits twice as long, up to
8 times the base and never more than :data:`MAX_WAIT_S` (a base above that is kept as it is). Each
wait is multiplied by a random factor in [0.8, 1.2] so that a fleet disconnected together does
not re-send together. :meth:`Backoff.reset` (an acknowledgement, a new connection) makes the
next wait the base again. The class does no I/O and reads no clock: callers pass ``now``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: Ceiling of one wait, whatever the base (unless the base itself is larger).
MAX_WAIT_S = 120.0
#: The nominal wait never exceeds this multiple of the base.
MAX_FACTOR = 8
JITTER_LOW = 0.8
JITTER_HIGH = 1.2

_RNG = random.Random()  # jitter, not security


class Backoff:
    """When one outstanding item is due to be sent again. See the module docstring.

    ``rng`` returns a float in [0, 1) (default: :func:`random.random` of a private
    generator); tests pass a fixed one.
    """

    def __init__(self, base_s: float, *, rng: Callable[[], float] | None = None) -> None:
        if base_s <= 0:
            raise ValueError(f"the base interval must be positive, not {base_s}")
        self._base_s = base_s
        self._ceiling_s = max(base_s, MAX_WAIT_S)
        self._rng = rng or _RNG.random
        self._level = 0  # sends since the last reset: the next wait is base * 2**level
        self._due_at: float | None = None  # None: never sent, due at once
        self.wait_s = 0.0  # the wait chosen at the last send (0: never sent)

    def due(self, now: float) -> bool:
        """Whether the item should be sent (again) at ``now``: never sent, or its wait is over."""
        return self._due_at is None or now >= self._due_at

    def sent(self, now: float) -> None:
        """The item was just sent at ``now``: it is due again after the next, longer wait."""
        nominal = min(self._base_s * 2**self._level, self._base_s * MAX_FACTOR)
        factor = JITTER_LOW + (JITTER_HIGH - JITTER_LOW) * self._rng()
        self.wait_s = min(nominal * factor, self._ceiling_s)
        self._due_at = now + self.wait_s
        self._level = min(self._level + 1, MAX_FACTOR.bit_length())

    def reset(self) -> None:
        """Back to the base interval: the wait after the next send is the base again (the
        wait already running is not changed)."""
        self._level = 0
