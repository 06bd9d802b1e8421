"""The event hub: in-process fan-out of live events to WebSocket subscribers.

Publishing never blocks and never waits for a subscriber. Each subscriber owns a bounded
queue; when it is full the **oldest** queued event is dropped, the subscriber's drop counter
grows, and before its next event the subscriber receives a :class:`Dropped` notice with the
number of events it missed (``docs/api.md`` "Events"). A slow or stalled client therefore
costs the server at most ``queue_size`` events of memory and never delays anyone else.

Topics: ``logs``, ``targetAdded``, ``targetUpdated``, ``targetDeleted``, ``taskAdded``,
``taskUpdated``, ``taskDeleted``. A subscription may filter on a target id and/or a task id;
an event passes a filter when it concerns that target/task (events without one, e.g.
``taskAdded`` for a ``target`` filter, are passed only when the filter is not set).
Terminal output (``logs`` of the task ``terminal``) reaches only the subscriptions whose
:class:`LogAudience` sees its ``owner`` (issue 9).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
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
    ``owner`` (terminal output) for who may see it."""

    topic: str
    payload: Any
    target: str | None = None
    task: str | None = None
    owner: str | None = None

    def message(self) -> dict[str, Any]:
        """The JSON message sent to clients."""
        return {"topic": self.topic, "payload": self.payload}


@dataclasses.dataclass(frozen=True, slots=True)
class Dropped:
    """Notice that ``count`` events were dropped because the client read too slowly."""

    count: int

    def message(self) -> dict[str, Any]:
        """The JSON message sent to clients."""
        return {"topic": "dropped", "payload": {"count": self.count}}


class SubscriptionClosed(Exception):
    """The subscription (or the whole hub) was closed; no more events will come."""


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
        audience: LogAudience | None = None,
    ) -> None:
        self._hub = hub
        self.topics = topics
        self.target = target
        self.task = task
        self.audience = audience
        self._queue: collections.deque[Event] = collections.deque()
        self._max_queued = max_queued
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._closed = False

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
        """Queue ``event`` without blocking; returns how many events were dropped (0 or 1)."""
        if self._closed:
            return 0
        dropped = 0
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self._dropped += 1
            dropped = 1
        self._queue.append(event)
        self._wakeup.set()
        return dropped

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return len(self._queue)

    async def get(self) -> Event | Dropped:
        """The next event, or first a :class:`Dropped` notice if events were lost.

        Raises :class:`SubscriptionClosed` once the subscription is closed and drained.
        """
        while not self._queue and not self._dropped:
            if self._closed:
                raise SubscriptionClosed("subscription closed")
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._dropped:
            count, self._dropped = self._dropped, 0
            return Dropped(count)
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving events and wake a reader waiting in :meth:`get`."""
        if not self._closed:
            self._closed = True
            self._wakeup.set()
            self._hub.discard(self)


class EventHub:
    """Fan-out of events to subscriptions (single event loop; not thread-safe)."""

    def __init__(self, *, queue_size: int, on_drop: Callable[[int], None] | None = None) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._queue_size = queue_size
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
    ) -> Subscription:
        """A new subscription (``audience`` None: sees all terminal output, for in-process
        consumers). Raises ``ValueError`` for an unknown topic and
        :class:`SubscriptionClosed` when the hub is closed."""
        wanted = frozenset(topics)
        unknown = wanted - TOPICS
        if unknown:
            raise ValueError(f"unknown topic(s): {', '.join(sorted(unknown))}")
        if self.state is HubState.CLOSED:
            raise SubscriptionClosed("the event hub is closed")
        sub = Subscription(
            self, wanted, target=target, task=task, max_queued=self._queue_size, audience=audience
        )
        self._subscriptions.add(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        """Forget a subscription (called by :meth:`Subscription.close`)."""
        self._subscriptions.discard(sub)

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
                dropped += sub.offer(event)
        if dropped:
            log.debug("dropped %d %s event(s) for slow subscribers", dropped, topic)
            if self._on_drop is not None:
                self._on_drop(dropped)

    def close(self) -> None:
        """Close the hub and every subscription (readers get :class:`SubscriptionClosed`)."""
        self.state = HubState.CLOSED
        for sub in list(self._subscriptions):
            sub.close()
