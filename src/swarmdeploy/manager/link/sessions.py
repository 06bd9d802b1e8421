"""Per-target contact state: last message, ``bye``, online/offline (docs/protocol.md §6.1).

A target is **online** while its last message is younger than the online timeout (3 x the
heartbeat interval) and **offline** after that or at once after ``bye``. :class:`Sessions`
records every contact in memory (exact) and tells the caller when the stored last-contact
time is due to be written (throttled: a heartbeat storm must not hammer the database) and
when a target changed between online and offline (publish ``targetUpdated``). It implements
the registry's :class:`~swarmdeploy.manager.services.registry.Presence`. No I/O here.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(slots=True)
class Session:
    """What this process knows about one target's contact."""

    last_seen_ms: int
    written_ms: int | None = None  # when the stored last_seen_at was last written
    bye_ms: int | None = None  # set by ``bye``, cleared by any later message
    online: bool = True
    boot_id: str = ""
    arch: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Contact:
    """Outcome of recording one message: write the contact time? did it come online?"""

    write: bool
    came_online: bool


class Sessions:
    """Contact state of every target heard from since start (see the module docstring)."""

    def __init__(self, *, online_timeout_ms: int, touch_interval_ms: int) -> None:
        self._timeout_ms = online_timeout_ms
        self._touch_ms = touch_interval_ms
        self._sessions: dict[str, Session] = {}

    def seen(self, target_id: str, now_ms: int, *, force_write: bool = False) -> Contact:
        """Record a message from ``target_id`` at ``now_ms``."""
        session = self._sessions.get(target_id)
        if session is None:
            self._sessions[target_id] = Session(last_seen_ms=now_ms, written_ms=now_ms)
            return Contact(write=True, came_online=True)
        came_online = not session.online
        session.last_seen_ms = max(session.last_seen_ms, now_ms)
        session.bye_ms = None
        session.online = True
        due = session.written_ms is None or now_ms - session.written_ms >= self._touch_ms
        write = force_write or came_online or due
        if write:
            session.written_ms = now_ms
        return Contact(write=write, came_online=came_online)

    def hello(self, target_id: str, *, boot_id: str, arch: str) -> None:
        """Remember the agent process (``boot_id``) and architecture of the latest ``hello``."""
        session = self._sessions.get(target_id)
        if session is not None:
            session.boot_id, session.arch = boot_id, arch

    def bye(self, target_id: str, now_ms: int) -> bool:
        """The target said ``bye``: offline now. Returns whether it was online."""
        session = self._sessions.get(target_id)
        if session is None:
            self._sessions[target_id] = Session(
                last_seen_ms=now_ms, written_ms=now_ms, bye_ms=now_ms, online=False
            )
            return False
        was_online = session.online
        session.last_seen_ms = max(session.last_seen_ms, now_ms)
        session.written_ms = now_ms
        session.bye_ms = session.last_seen_ms
        session.online = False
        return was_online

    def sweep(self, now_ms: int) -> list[str]:
        """Mark targets silent for longer than the timeout offline; returns their ids."""
        gone = []
        for target_id, session in self._sessions.items():
            if session.online and now_ms - session.last_seen_ms > self._timeout_ms:
                session.online = False
                gone.append(target_id)
        return gone

    def is_online(self, target_id: str) -> bool:
        """Whether the target counts as online (as of the last :meth:`sweep`)."""
        session = self._sessions.get(target_id)
        return session is not None and session.online

    def online_ids(self) -> list[str]:
        """Ids of the targets currently online."""
        return [t for t, s in self._sessions.items() if s.online]

    def forget(self, target_id: str) -> None:
        """Drop everything about ``target_id`` (revoked)."""
        self._sessions.pop(target_id, None)

    # -- registry Presence ---------------------------------------------------------------------
    def last_seen(self, target_id: str) -> int | None:
        """Time of the newest message heard from the target, if any."""
        session = self._sessions.get(target_id)
        return None if session is None else session.last_seen_ms

    def bye_at(self, target_id: str) -> int | None:
        """Time of the target's ``bye`` if nothing was heard since."""
        session = self._sessions.get(target_id)
        return None if session is None else session.bye_ms
