"""The target registry: list, read, partially update and delete (= revoke) targets.

Listeners (the transport server) are told about registrations and revocations, so that a
new target's CurveZMQ key is admitted and a deleted target's key is dropped and its
connection refused at once (DESIGN.md: "Deleting a target revokes it at once").
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.dispatch import Dispatcher
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.events import EventHub
from swarmdeploy.storage.base import UNCHANGED, Storage
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import Location, Page, TargetRecord

log = logging.getLogger(__name__)


class TargetListener(Protocol):
    """Told about targets joining and leaving (implemented by the transport server)."""

    async def target_registered(self, target: TargetRecord) -> None:
        """A target registered: admit its CurveZMQ key."""

    async def target_revoked(self, target: TargetRecord) -> None:
        """A target was deleted: drop its key and close its connection."""


@dataclasses.dataclass(frozen=True, slots=True)
class TargetView:
    """A target with its derived ``online`` flag."""

    record: TargetRecord
    online: bool


class TargetRegistry:
    """Targets as operators see them."""

    def __init__(
        self,
        storage: Storage,
        *,
        events: EventHub,
        dispatcher: Dispatcher,
        clock: Clock,
        online_timeout_ms: int,
    ) -> None:
        self._storage = storage
        self._events = events
        self._dispatcher = dispatcher
        self._clock = clock
        self._online_timeout_ms = online_timeout_ms
        self._listeners: list[TargetListener] = []

    def add_listener(self, listener: TargetListener) -> None:
        """Register a listener for registrations and revocations."""
        self._listeners.append(listener)

    def is_online(self, record: TargetRecord, now: int | None = None) -> bool:
        """Whether the agent was heard from within the online timeout."""
        if record.last_seen_at is None:
            return False
        now = self._clock() if now is None else now
        return now - record.last_seen_at <= self._online_timeout_ms

    def view(self, record: TargetRecord) -> TargetView:
        """``record`` with its online flag."""
        return TargetView(record, self.is_online(record))

    async def list(
        self, *, tags: Sequence[str], search: str | None, page: int, per_page: int
    ) -> Page[TargetView]:
        """Targets sorted by id; ``tags`` ANDed, ``search`` a substring of id or name."""
        result = await self._storage.list_targets(
            tags=tags, search=search, page=page, per_page=per_page
        )
        now = self._clock()
        views = [TargetView(r, self.is_online(r, now)) for r in result.items]
        return Page(total=result.total, items=views, page=result.page, per_page=result.per_page)

    async def get(self, target_id: str) -> TargetRecord:
        """The target; :class:`NotFoundError` if unknown."""
        record = await self._storage.get_target(target_id)
        if record is None:
            raise NotFoundError(f"target {target_id} is not found")
        return record

    async def update(self, target_id: str, changes: dict[str, Any]) -> TargetRecord:
        """Partial update of ``name``, ``tags`` and/or ``location`` (``None`` clears it).
        Keys are never touched. Publishes ``targetUpdated``."""
        fields: dict[str, Any] = {
            "name": changes.get("name", UNCHANGED),
            "tags": tuple(changes["tags"]) if "tags" in changes else UNCHANGED,
            "location": UNCHANGED,
        }
        if "location" in changes:
            loc = changes["location"]
            fields["location"] = None if loc is None else Location(loc["lat"], loc["lon"])
        try:
            record = await self._storage.update_target(
                target_id, **fields, updated_at=self._clock()
            )
        except NotFound:
            raise NotFoundError(f"target {target_id} is not found") from None
        log.info("target %s updated (%s)", target_id, ", ".join(sorted(changes)) or "nothing")
        self._events.publish("targetUpdated", target_json(self.view(record)), target=target_id)
        return record

    async def delete(self, target_id: str) -> TargetRecord:
        """Delete and revoke the target: storage first, then queued requests are dropped and
        every listener is told. Publishes ``targetDeleted``."""
        try:
            record = await self._storage.delete_target(target_id)
        except NotFound:
            raise NotFoundError(f"target {target_id} is not found") from None
        await self._dispatcher.discard(target_id)
        await self.notify_revoked(record)
        log.info("target %s deleted and revoked", target_id)
        self._events.publish("targetDeleted", {"id": target_id}, target=target_id)
        return record

    async def notify_registered(self, record: TargetRecord) -> None:
        """Tell listeners about a new target (called by the registration service)."""
        for listener in self._listeners:
            try:
                await listener.target_registered(record)
            except Exception:  # top of the listener loop: one failing listener is logged
                log.exception("listener failed on the registration of %s", record.id)

    async def notify_revoked(self, record: TargetRecord) -> None:
        """Tell listeners that a target was revoked."""
        for listener in self._listeners:
            try:
                await listener.target_revoked(record)
            except Exception:  # top of the listener loop: one failing listener is logged
                log.exception("listener failed on the revocation of %s", record.id)


def target_json(view: TargetView) -> dict[str, Any]:
    """The API document of a target (also the payload of target events)."""
    r = view.record
    return {
        "id": r.id,
        "name": r.name,
        "tags": list(r.tags),
        "location": None if r.location is None else {"lat": r.location.lat, "lon": r.location.lon},
        "publicKey": r.curve_key,
        "identityKey": r.identity_key,
        "tokenSet": r.token_set,
        "createdAt": r.created_at,
        "updatedAt": r.updated_at,
        "lastSeenAt": r.last_seen_at,
        "logRequestAt": r.log_request_at,
        "online": view.online,
        "health": r.health,
    }
