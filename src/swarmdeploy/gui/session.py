"""Signed-in GUI sessions: which API key a browser session uses, kept in memory only.

A browser session is named by the random id NiceGUI keeps in a signed cookie; the API key the
operator typed never leaves the server and is never written to disk. A session ends on
sign-out, after ``idle_s`` without use, or when the manager restarts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

IDLE_S = 12 * 3600.0
MAX_SESSIONS = 10_000


@dataclasses.dataclass(frozen=True)
class Operator:
    """Who is signed in, as ``GET /rpc/whoami`` answered."""

    name: str
    role: str
    audit_name: str

    def allows(self, needed: str) -> bool:
        """Whether the role includes ``needed`` (only to hide controls: the API decides)."""
        order = ("viewer", "operator", "admin")
        return self.role in order and order.index(self.role) >= order.index(needed)


@dataclasses.dataclass
class Session:
    """One signed-in browser session."""

    api_key: str
    operator: Operator
    last_used: float
    #: What another page hands to the new-deployment form: target ids chosen on the map, or
    #: a whole descriptor (YAML) to start from ("Duplicate"). Taken once.
    draft_ids: list[str] = dataclasses.field(default_factory=list)
    draft_yaml: str = ""


class SessionStore:
    """Browser session id -> :class:`Session`, bounded in number and idle time."""

    def __init__(
        self,
        *,
        idle_s: float = IDLE_S,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_s = idle_s
        self._max = max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def sign_in(self, browser_id: str, api_key: str, operator: Operator) -> None:
        """Bind ``api_key`` to ``browser_id`` (replacing an earlier binding)."""
        self._expire()
        if len(self._sessions) >= self._max and browser_id not in self._sessions:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].last_used)
            del self._sessions[oldest]
        self._sessions[browser_id] = Session(api_key, operator, self._clock())

    def get(self, browser_id: str | None) -> Session | None:
        """The live session of ``browser_id`` (its idle time restarts), or None."""
        if browser_id is None:
            return None
        session = self._sessions.get(browser_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used > self._idle_s:
            del self._sessions[browser_id]
            return None
        session.last_used = now
        return session

    def sign_out(self, browser_id: str | None) -> None:
        """Forget the session of ``browser_id`` (nothing if there is none)."""
        if browser_id is not None:
            self._sessions.pop(browser_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if now - s.last_used > self._idle_s]:
            del self._sessions[key]
