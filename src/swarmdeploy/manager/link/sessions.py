"""Per-target contact state: last message, ``bye``, online/offline (docs/protocol.md §6.1).

A target is **online** while its last message is younger than the online timeout (3 x the
heartbeat interval) and **offline** after that or at once after ``bye``. :class:`Sessions`
records every contact in memory (exact) and tells the caller when a contact must be written
at once (a target's first message, coming online, forced by the caller) and when a target
changed between online and offline (publish ``targetUpdated``). The contact times of other
messages (heartbeats, most of all) are only kept in memory; :meth:`Sessions.due_writes`
hands the ones not yet stored to the link's sweep, at most once per touch interval, which
stores them all in one batch: an idle fleet costs no transaction per heartbeat, and the
stored time lags the exact one by at most about the touch interval (what the API shows comes
from memory). A health report's document (and its history sample) waits for the same batch
(:meth:`Sessions.hold_health`): an idle fleet costs no transaction per health report either,
and the API shows the newest document from memory meanwhile. It implements the registry's
:class:`~swarmdeploy.manager.services.registry.Presence`. No I/O here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from swarmdeploy.storage.records import ContactWrite, HealthSample


@dataclasses.dataclass(slots=True)
class Session:
    """What this process knows about one target's contact."""

    last_seen_ms: int
    written_ms: int | None = None  # the contact time last written to storage
    bye_ms: int | None = None  # set by ``bye``, cleared by any later message
    online: bool = True
    boot_id: str = ""
    arch: str = ""
    health: dict[str, Any] | None = None  # the newest health document, not stored yet
    sample: HealthSample | None = None  # a health-history sample, not stored yet


@dataclasses.dataclass(frozen=True, slots=True)
class Contact:
    """Outcome of recording one message: write the contact time now (else it is written by
    the next :meth:`Sessions.due_writes` batch)? did it come online?"""

    write: bool
    came_online: bool


class Sessions:
    """Contact state of every target heard from since start (see the module docstring)."""

    def __init__(self, *, online_timeout_ms: int, touch_interval_ms: int) -> None:
        self._timeout_ms = online_timeout_ms
        self._touch_ms = touch_interval_ms
        self._sessions: dict[str, Session] = {}
        self._flushed_ms: int | None = None  # when due_writes last handed out contacts

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
        write = force_write or came_online or session.written_ms is None
        if write:
            session.written_ms = now_ms
        return Contact(write=write, came_online=came_online)

    def seen_quietly(self, target_id: str, now_ms: int) -> bool:
        """Record a message that needs no write and changes nothing else (a heartbeat of a
        target that is online): ``True`` if recorded, ``False`` (nothing recorded) when it
        must go through :meth:`seen` (first contact, coming online)."""
        session = self._sessions.get(target_id)
        if session is None or not session.online or session.written_ms is None:
            return False
        session.last_seen_ms = max(session.last_seen_ms, now_ms)
        session.bye_ms = None
        return True

    def hold_health(
        self, target_id: str, health: dict[str, Any], sample: HealthSample | None
    ) -> bool:
        """Keep a health report's document (and the history sample due with it) for the
        next :meth:`due_writes` batch. ``False`` (nothing kept) for a target not heard from,
        or when a sample is due while an older one is still held: store it at once."""
        session = self._sessions.get(target_id)
        if session is None or (sample is not None and session.sample is not None):
            return False
        session.health = health
        if sample is not None:
            session.sample = sample
        return True

    def due_writes(self, now_ms: int, *, force: bool = False) -> list[ContactWrite]:
        """The writes of every target whose newest contact or health report is not stored
        yet, once per touch interval (``[]`` in between, unless ``force``). Call
        :meth:`written` for those stored; the others are handed out again next time."""
        recent = self._flushed_ms is not None and now_ms - self._flushed_ms < self._touch_ms
        if recent and not force:
            return []
        self._flushed_ms = now_ms
        return [
            ContactWrite(target_id, s.last_seen_ms, s.health, s.sample)
            for target_id, s in self._sessions.items()
            if s.written_ms is None
            or s.last_seen_ms > s.written_ms
            or s.health is not None
            or s.sample is not None
        ]

    def written(self, write: ContactWrite) -> None:
        """``write`` (from :meth:`due_writes`) is stored; what arrived since stays due."""
        session = self._sessions.get(write.target_id)
        if session is None:
            return
        if session.written_ms is None or write.seen_at > session.written_ms:
            session.written_ms = write.seen_at
        if write.health is not None and session.health is write.health:
            session.health = None
        if write.sample is not None and session.sample is write.sample:
            session.sample = None

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

    def health(self, target_id: str) -> dict[str, Any] | None:
        """The target's newest health document while it is not stored yet, else ``None``."""
        session = self._sessions.get(target_id)
        return None if session is None else session.health
