"""The target registry: list, read, partially update and delete (= revoke) targets.

Listeners (the transport server) are told about registrations and revocations, so that a
new target's CurveZMQ key is admitted and a deleted target's key is dropped and its
connection refused at once (DESIGN.md: "Deleting a target revokes it at once"). Update
listeners hear about API changes of name, tags and location (the link pushes a ``config``).

``online`` follows docs/protocol.md §6.1: a target is online while its last message is younger
than the online timeout, and offline at once after a ``bye``; a contact from before this
process started does not count (a restarted manager knows nothing of what happened since).
Storage holds the time of the last contact (written at a throttled rate); a
:class:`Presence` (the agent link) adds what this process heard since, so that
``lastSeenAt`` and ``online`` are current.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.dispatch import Dispatcher
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.health import reported_position
from swarmdeploy.protocol.selector import Selector
from swarmdeploy.storage.base import UNCHANGED, Storage
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import (
    IndoorPosition,
    Location,
    Page,
    TargetRecord,
    TaskRecord,
    TaskTargetRecord,
)

log = logging.getLogger(__name__)


class TargetListener(Protocol):
    """Told about targets joining and leaving (implemented by the transport server)."""

    async def target_registered(self, target: TargetRecord) -> None:
        """A target registered: admit its CurveZMQ key."""

    async def target_revoked(self, target: TargetRecord) -> None:
        """A target was deleted: drop its key and close its connection."""


class TargetUpdateListener(Protocol):
    """Told about targets changed through the API (implemented by the agent link)."""

    async def target_updated(self, target: TargetRecord) -> None:
        """Name, tags or location of ``target`` changed: push them to the agent."""


class Presence(Protocol):
    """What this process knows about agents' contact beyond storage (the agent link)."""

    def last_seen(self, target_id: str) -> int | None:
        """Time of the newest message from the target heard here (ms), if any."""

    def bye_at(self, target_id: str) -> int | None:
        """Time of the target's ``bye`` if nothing was heard from it since, else ``None``."""

    def health(self, target_id: str) -> dict[str, Any] | None:
        """The target's newest health report if it is not stored yet, else ``None``."""


@dataclasses.dataclass(frozen=True, slots=True)
class TargetView:
    """A target with its derived ``online`` flag."""

    record: TargetRecord
    online: bool
    #: ``sha256:<hex>`` of the deployment CA's key this manager certifies operators with
    #: (empty: unknown); compared with the anchors the agent reports.
    ca_fingerprint: str = ""
    #: The target's rows of its newest tasks, newest first (``None``: not looked up).
    recent: tuple[TaskTargetRecord, ...] | None = None
    #: Its place on a floor plan (looked up with ``recent``).
    indoor: IndoorPosition | None = None


#: How many of its newest tasks a target document shows (``recentTasks``).
RECENT_TASKS = 5


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
        ca_fingerprint: str = "",
    ) -> None:
        self._storage = storage
        self._ca_fingerprint = ca_fingerprint
        self._events = events
        self._dispatcher = dispatcher
        self._clock = clock
        self._online_timeout_ms = online_timeout_ms
        #: Contacts stored before this process started do not make a target online: a
        #: restarted manager does not know of a ``bye`` or a crash since (docs/reliability.md).
        self._since_ms = clock()
        self._listeners: list[TargetListener] = []
        self._update_listeners: list[TargetUpdateListener] = []
        self._presence: Presence | None = None

    def add_listener(self, listener: TargetListener) -> None:
        """Register a listener for registrations and revocations."""
        self._listeners.append(listener)

    def add_update_listener(self, listener: TargetUpdateListener) -> None:
        """Register a listener for API updates of name, tags and location."""
        self._update_listeners.append(listener)

    def set_presence(self, presence: Presence | None) -> None:
        """Use ``presence`` (the agent link) in addition to the stored last contact."""
        self._presence = presence

    def last_seen(self, record: TargetRecord) -> int | None:
        """The newest known contact: stored, or heard by this process since."""
        heard = None if self._presence is None else self._presence.last_seen(record.id)
        if heard is None or (record.last_seen_at is not None and record.last_seen_at > heard):
            return record.last_seen_at
        return heard

    def is_online(self, record: TargetRecord, now: int | None = None) -> bool:
        """Whether the agent was heard from within the online timeout and has not said
        ``bye`` since -- heard by this process, or stored (by a replica) since it started:
        after a manager restart every target is offline until a message arrives."""
        last = self.last_seen(record)
        if last is None or last < self._since_ms:
            return False
        bye = None if self._presence is None else self._presence.bye_at(record.id)
        if bye is not None and bye >= last:
            return False
        now = self._clock() if now is None else now
        return now - last <= self._online_timeout_ms

    def view(self, record: TargetRecord, now: int | None = None) -> TargetView:
        """``record`` (with the newest known ``last_seen_at``) and its online flag."""
        online = self.is_online(record, now)
        last = self.last_seen(record)
        health = None if self._presence is None else self._presence.health(record.id)
        if last != record.last_seen_at or health is not None:
            newest = record.health if health is None else health
            record = dataclasses.replace(record, last_seen_at=last, health=newest)
        return TargetView(record, online, self._ca_fingerprint)

    async def list(
        self,
        *,
        tags: Sequence[str],
        search: str | None,
        page: int,
        per_page: int,
        selector: Selector | None = None,
    ) -> Page[TargetView]:
        """Targets sorted by id; ``tags`` ANDed, ``search`` a substring of id or name,
        ``selector`` as in ``docs/selectors.md`` (the one filter of targets lists)."""
        result = await self._storage.list_targets(
            tags=tags, search=search, page=page, per_page=per_page, selector=selector
        )
        views = await self.with_recent(result.items)
        return Page(total=result.total, items=views, page=result.page, per_page=result.per_page)

    async def with_recent(self, records: Sequence[TargetRecord]) -> builtins.list[TargetView]:
        """Views of ``records`` with each one's :data:`RECENT_TASKS` newest task rows (one
        storage query for all of them)."""
        now = self._clock()
        ids = [r.id for r in records]
        recent = await self._storage.recent_task_rows(ids, per_target=RECENT_TASKS)
        indoor = await self._storage.indoor_positions(ids)
        views = [self.view(r, now) for r in records]
        return [
            TargetView(v.record, v.online, v.ca_fingerprint, tuple(recent.get(v.record.id, ())),
                       indoor.get(v.record.id))
            for v in views
        ]  # fmt: skip

    async def history(
        self, target_id: str, *, page: int, per_page: int
    ) -> Page[tuple[TaskTargetRecord, TaskRecord | None]]:
        """The target's row of every task it was part of, newest task first, each with its
        task; :class:`NotFoundError` if the target is unknown."""
        await self.get(target_id)
        rows = await self._storage.target_tasks(target_id)
        chosen = rows[(page - 1) * per_page : page * per_page]
        items = [(row, await self._storage.get_task(row.task_id)) for row in chosen]
        return Page(total=len(rows), items=items, page=page, per_page=per_page)

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
        for listener in self._update_listeners:
            try:
                await listener.target_updated(record)
            except Exception:  # top of the listener loop: the update is stored; log and go on
                log.exception("listener failed on the update of %s", target_id)
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


def insecure_lab(health: dict[str, Any] | None) -> bool:
    """Whether the latest health report says the agent runs in insecure lab mode (it then
    accepts unsigned tasks). The agent sends ``insecure_lab`` as an optional field, which the
    link keeps among the report's unknown fields (``__extra__``); a missing report: False."""
    if not health:
        return False
    extra = health.get("__extra__")
    return isinstance(extra, dict) and extra.get("insecure_lab") is True


def security_summary(health: dict[str, Any] | None, ca_fingerprint: str) -> dict[str, Any]:
    """What the latest health report says about the agent's trust (docs/security.md):
    ``mode`` (``verified``, ``insecure_lab``, ``no_anchor``; ``unknown`` before a report),
    ``trustsThisManager`` (whether its anchors include this manager's CA; ``None`` when
    unknown) and the number of the revocation list it holds."""
    security = _reported_security(health)
    if security is None:
        return {
            "mode": "unknown",
            "trustsThisManager": None,
            "revocationList": 0,
            "terminal": "unknown",
            "onRevoked": "unknown",
        }
    anchors = security.get("anchors")
    trusts = None
    if ca_fingerprint and isinstance(anchors, list):
        trusts = ca_fingerprint in anchors
    number = security.get("revocation_list")
    return {
        "mode": _text(security.get("mode")),
        "trustsThisManager": trusts,
        "revocationList": number if isinstance(number, int) else 0,
        "terminal": _text(security.get("terminal")),
        "onRevoked": _text(security.get("on_revoked")),
    }


_LIMIT_NAMES = ("processes", "memoryBytes", "fileSizeBytes", "cpuSeconds", "openFiles")


def confinement_summary(health: dict[str, Any] | None) -> dict[str, Any]:
    """What the latest health report says the agent can enforce on deployed commands
    (docs/security.md, issue 9): ``sandbox`` (``bwrap``, ``unprivileged_user``, ``none``;
    ``unknown`` before a report), ``seccomp`` (a filter that also blocks new user
    namespaces; ``None`` when not reported), ``limitMechanism`` (``rlimit``) and the limit
    ceilings by descriptor name (0: none). Malformed fields are left out."""
    extra = (health or {}).get("__extra__")
    security = extra.get("security") if isinstance(extra, dict) else None
    security = security if isinstance(security, dict) else {}
    reported = security.get("confinement")
    reported = reported if isinstance(reported, dict) else {}
    limits = reported.get("limits")
    limits = limits if isinstance(limits, dict) else {}
    kind, seccomp, mechanism = (
        security.get("sandbox"),
        reported.get("seccomp"),
        limits.get("mechanism"),
    )
    return {
        "sandbox": kind if isinstance(kind, str) else "unknown",
        "seccomp": seccomp if isinstance(seccomp, bool) else None,
        "limitMechanism": mechanism if isinstance(mechanism, str) else None,
        "limits": {
            name: limits[name]
            for name in _LIMIT_NAMES
            if isinstance(limits.get(name), int) and not isinstance(limits.get(name), bool)
        },
    }


def _reported_security(health: dict[str, Any] | None) -> dict[str, Any] | None:
    extra = (health or {}).get("__extra__")
    security = extra.get("security") if isinstance(extra, dict) else None
    return security if isinstance(security, dict) else None


def _text(value: Any) -> str:
    """A short reported word, or ``unknown`` (older agents do not report it)."""
    return value[:32] if isinstance(value, str) and value else "unknown"


def signer_revoked(health: dict[str, Any] | None) -> list[str]:
    """Task ids of running deployments whose signing key the agent found revoked (issue 9:
    the agent marks them, and stops them with ``--on-revoked stop``)."""
    security = _reported_security(health)
    found = security.get("signer_revoked") if security is not None else None
    if not isinstance(found, list):
        return []
    return [str(t)[:128] for t in found[:16] if isinstance(t, str)]


def _locations(r: TargetRecord) -> dict[str, Any]:
    """``location``: where the map puts the target -- the one set by an operator (or at
    registration) wins; without one, the position the device reports itself
    (``reportedLocation``, from ``--location gpsd``). ``locationSource`` says which."""
    reported = reported_position(r.health)
    if r.location is not None:
        where: dict[str, float] | None = {
            "lat": float(r.location.lat),
            "lon": float(r.location.lon),
        }
        source: str | None = "manual"
    elif reported is not None:
        where, source = {"lat": reported["lat"], "lon": reported["lon"]}, "device"
    else:
        where, source = None, None
    return {"location": where, "locationSource": source, "reportedLocation": reported}


def target_json(view: TargetView) -> dict[str, Any]:
    """The API document of a target (also the payload of target events); ``insecureLab``
    shows an agent that accepts unsigned tasks (:func:`insecure_lab`), ``security`` what it
    trusts (:func:`security_summary`), ``signerRevoked`` the running deployments its agent
    found signed by a revoked key (:func:`signer_revoked`)."""
    r = view.record
    return {
        "id": r.id,
        "name": r.name,
        "tags": list(r.tags),
        **_locations(r),
        "publicKey": r.curve_key,
        "identityKey": r.identity_key,
        "tokenSet": r.token_set,
        "createdAt": r.created_at,
        "updatedAt": r.updated_at,
        "lastSeenAt": r.last_seen_at,
        "logRequestAt": r.log_request_at,
        "online": view.online,
        "health": r.health,
        "insecureLab": insecure_lab(r.health),
        "security": security_summary(r.health, view.ca_fingerprint),
        **(
            {}
            if view.recent is None
            else {
                "recentTasks": [
                    {
                        "task": row.task_id,
                        "role": row.role,
                        "state": row.state,
                        "reason": row.reason,
                        "updatedAt": row.updated_at,
                    }
                    for row in view.recent
                ],
                "indoor": None
                if view.indoor is None
                else {
                    "plan": view.indoor.plan_id,
                    "x": float(view.indoor.x),
                    "y": float(view.indoor.y),
                },
            }
        ),
        "confinement": confinement_summary(r.health),
        "signerRevoked": signer_revoked(r.health),
        **device_facts(r.health),
    }


def device_facts(health: dict[str, Any] | None) -> dict[str, Any]:
    """``os``, ``arch`` and ``agentVersion`` as the agent's latest health report gave them
    (``None`` until it sent one), and ``transport``: the agent link it reported (``zmq`` or
    ``http``, among the report's optional fields; agents that predate it speak ``zmq``)."""
    doc = health or {}

    def fact(key: str) -> str | None:
        value = doc.get(key)
        return value if isinstance(value, str) and value else None

    extra = doc.get("__extra__")
    link = extra.get("transport") if isinstance(extra, dict) else None
    return {
        "os": fact("os"),
        "arch": fact("arch"),
        "agentVersion": fact("agent_version"),
        "transport": link if link in ("zmq", "http") else ("zmq" if health else None),
    }
