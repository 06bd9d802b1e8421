"""The event hub: in-process fan-out of live events to WebSocket subscribers.

Publishing never blocks and never waits for a subscriber. Each subscriber owns a queue
bounded twice:

* in events: when ``queue_size`` events wait, the **oldest** is dropped, the subscriber's
  drop counter grows, and before its next event the subscriber receives a :class:`Dropped`
  notice with the number of events it missed (``docs/api.md`` "Events");
* in bytes (issue 9, item 11): each event is encoded once (:attr:`Event.text`); when the
  encoded events waiting for one subscriber exceed ``queue_bytes``, the subscriber is closed
  (:attr:`CloseReason.TOO_SLOW`) -- a client that stays that far behind is dropped, and a
  stalled one costs at most ``queue_bytes`` plus one event, never a thousand large events.

A subscription names its ``key_id`` (the API key it was opened with); :meth:`EventHub.
disconnect` closes every subscription of a key at once (:attr:`CloseReason.REVOKED`:
the key was deleted, issue 9 item 5).

Topics: ``logs``, ``targetAdded``, ``targetUpdated``, ``targetDeleted``, ``taskAdded``,
``taskUpdated``, ``taskDeleted``, ``rolloutUpdated`` (docs/rollouts.md). A subscription
may filter on a target id and/or a task id; an event passes a filter when it concerns
that target/task (events without one, e.g. ``taskAdded`` for a ``target`` filter, are
passed only when the filter is not set).
Terminal output (``logs`` of the task ``terminal``) reaches only the subscriptions whose
:class:`LogAudience` sees its ``owner`` (issue 9).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)

TOPICS: frozenset[str] = frozenset(
    {
        "logs",
        "targetAdded",
        "targetUpdated",
        "targetDeleted",
        "taskAdded",
        "rolloutUpdated",
        "taskUpdated",
        "taskDeleted",
    }
)
#: The pseudo task of terminal output, whose ``logs`` events are shown to their owner only.
TERMINAL_TASK = "terminal"


class LogAudience(Protocol):
    """Who a subscription shows terminal output to (``services.log_access.LogAudience``)."""

    def sees_terminal(self, owner: str | None) -> bool:
        """Whether a terminal line owned by ``owner`` (None: unknown) is visible."""


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One event: ``payload`` is JSON-able; ``target``/``task`` are used for filtering,
    ``owner`` (terminal output) for who may see it; ``text`` is the message sent to clients,
    encoded once for every subscriber."""

    topic: str
    payload: Any
    target: str | None = None
    task: str | None = None
    owner: str | None = None
    text: str = dataclasses.field(default="", compare=False, repr=False)

    def message(self) -> dict[str, Any]:
        """The JSON message sent to clients."""
        return {"topic": self.topic, "payload": self.payload}

    @property
    def size(self) -> int:
        """What the event costs a subscriber's queue (characters of :attr:`text`)."""
        return len(self.text)


def encode(message: dict[str, Any]) -> str:
    """The compact JSON text of a message."""
    return json.dumps(message, separators=(",", ":"))


@dataclasses.dataclass(frozen=True, slots=True)
class Dropped:
    """Notice that ``count`` events were dropped because the client read too slowly."""

    count: int

    def message(self) -> dict[str, Any]:
        """The JSON message sent to clients."""
        return {"topic": "dropped", "payload": {"count": self.count}}

    @property
    def text(self) -> str:
        """The encoded message."""
        return encode(self.message())


class CloseReason(enum.Enum):
    """Why a subscription ended; the value is the WebSocket close code sent."""

    SHUTDOWN = 1001  # the hub closed (server shutting down)
    REVOKED = 1008  # the subscriber's credential was deleted
    TOO_SLOW = 1013  # more than queue_bytes waited for the client
    CLIENT = 1000  # the client went away (nothing is sent)


class SubscriptionClosed(Exception):
    """The subscription (or the whole hub) was closed; no more events will come."""

    def __init__(self, message: str, reason: CloseReason = CloseReason.SHUTDOWN) -> None:
        super().__init__(message)
        self.reason = reason


class HubState(enum.Enum):
    """Lifecycle of the hub: ``OPEN`` until :meth:`EventHub.close`."""

    OPEN = "open"
    CLOSED = "closed"


class Subscription:
    """A subscriber's filtered, bounded view of the hub. Use :meth:`get` to read."""

    def __init__(
        self,
        hub: EventHub,
        topics: frozenset[str],
        *,
        target: str | None,
        task: str | None,
        max_queued: int,
        max_bytes: int,
        audience: LogAudience | None = None,
        key_id: str | None = None,
    ) -> None:
        self._hub = hub
        self.topics = topics
        self.target = target
        self.task = task
        self.audience = audience
        self.key_id = key_id
        self._queue: collections.deque[Event] = collections.deque()
        self._max_queued = max_queued
        self._max_bytes = max_bytes
        self._bytes = 0
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._closed = False
        self.reason: CloseReason | None = None
        self.ended = asyncio.Event()

    def wants(self, event: Event) -> bool:
        """Whether ``event`` passes this subscription's topic and id filters."""
        if event.topic not in self.topics:
            return False
        if self.target is not None and event.target != self.target:
            return False
        if self.task is not None and event.task != self.task:
            return False
        if self.audience is not None and event.topic == "logs" and event.task == TERMINAL_TASK:
            return self.audience.sees_terminal(event.owner)
        return True

    def offer(self, event: Event) -> int:
        """Queue ``event`` without blocking; returns how many events were dropped (0 or 1).
        Closes the subscription (:attr:`CloseReason.TOO_SLOW`) when more than
        ``max_bytes`` would wait (a single event larger than that is still delivered)."""
        if self._closed:
            return 0
        dropped = 0
        if len(self._queue) >= self._max_queued:
            self._bytes -= self._queue.popleft().size
            self._dropped += 1
            dropped = 1
        if self._queue and self._bytes + event.size > self._max_bytes:
            log.warning("closing an /events client of %s: more than %d bytes of events waited",
                        self.key_id or "-", self._max_bytes)  # fmt: skip
            self.close(CloseReason.TOO_SLOW)
            return 0
        self._queue.append(event)
        self._bytes += event.size
        self._wakeup.set()
        return dropped

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Encoded size of the events waiting to be read."""
        return self._bytes

    async def get(self) -> Event | Dropped:
        """The next event, or first a :class:`Dropped` notice if events were lost.

        Raises :class:`SubscriptionClosed` once the subscription is closed and drained (at
        once when it was revoked or dropped as too slow).
        """
        while (not self._queue and not self._dropped) or self._cut_off:
            if self._closed:
                reason = self.reason or CloseReason.SHUTDOWN
                raise SubscriptionClosed(f"subscription closed ({reason.name})", reason)
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._dropped:
            count, self._dropped = self._dropped, 0
            return Dropped(count)
        event = self._queue.popleft()
        self._bytes -= event.size
        return event

    @property
    def _cut_off(self) -> bool:
        return self.reason in (CloseReason.REVOKED, CloseReason.TOO_SLOW)

    def close(self, reason: CloseReason = CloseReason.CLIENT) -> None:
        """Stop receiving events and wake a reader waiting in :meth:`get` (and anyone
        waiting on :attr:`ended`). A revoked or too-slow subscription drops what waited."""
        if not self._closed:
            self._closed = True
            self.reason = reason
            if self._cut_off:
                self._queue.clear()
                self._bytes = 0
            self._wakeup.set()
            self.ended.set()
            self._hub.discard(self)


class EventHub:
    """Fan-out of events to subscriptions (single event loop; not thread-safe)."""

    def __init__(
        self, *, queue_size: int, queue_bytes: int = 16 << 20,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:  # fmt: skip
        if queue_size < 1 or queue_bytes < 1:
            raise ValueError("queue_size and queue_bytes must be at least 1")
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self._subscriptions: set[Subscription] = set()
        self._on_drop = on_drop
        self.state = HubState.OPEN

    def subscribe(
        self,
        topics: Iterable[str] = TOPICS,
        *,
        target: str | None = None,
        task: str | None = None,
        audience: LogAudience | None = None,
        key_id: str | None = None,
    ) -> Subscription:
        """A new subscription (``audience`` None: sees all terminal output, for in-process
        consumers; ``key_id``: the API key it was opened with, see :meth:`disconnect`).
        Raises ``ValueError`` for an unknown topic and :class:`SubscriptionClosed` when the
        hub is closed."""
        wanted = frozenset(topics)
        unknown = wanted - TOPICS
        if unknown:
            raise ValueError(f"unknown topic(s): {', '.join(sorted(unknown))}")
        if self.state is HubState.CLOSED:
            raise SubscriptionClosed("the event hub is closed")
        sub = Subscription(self, wanted, target=target, task=task, audience=audience,
                           key_id=key_id, max_queued=self._queue_size,
                           max_bytes=self._queue_bytes)  # fmt: skip
        self._subscriptions.add(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        """Forget a subscription (called by :meth:`Subscription.close`)."""
        self._subscriptions.discard(sub)

    def disconnect(self, key_id: str) -> int:
        """Close every subscription opened with the API key ``key_id`` at once (the key was
        deleted); returns how many were closed."""
        subs = [sub for sub in self._subscriptions if sub.key_id == key_id]
        for sub in subs:
            sub.close(CloseReason.REVOKED)
        return len(subs)

    def subscriptions(self) -> list[Subscription]:
        """The live subscriptions (a copy)."""
        return list(self._subscriptions)

    @property
    def subscriber_count(self) -> int:
        """Number of live subscriptions."""
        return len(self._subscriptions)

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        target: str | None = None,
        task: str | None = None,
        owner: str | None = None,
    ) -> None:
        """Offer an event to every matching subscription; never blocks."""
        if topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}")
        event = Event(topic, payload, target=target, task=task, owner=owner)
        dropped = 0
        for sub in list(self._subscriptions):
            if sub.wants(event):
                if not event.text:  # encoded once, only when someone wants it
                    event = dataclasses.replace(event, text=encode(event.message()))
                dropped += sub.offer(event)
        if dropped:
            log.debug("dropped %d %s event(s) for slow subscribers", dropped, topic)
            if self._on_drop is not None:
                self._on_drop(dropped)

    def close(self) -> None:
        """Close the hub and every subscription (readers get :class:`SubscriptionClosed`)."""
        self.state = HubState.CLOSED
        for sub in list(self._subscriptions):
            sub.close(CloseReason.SHUTDOWN)
