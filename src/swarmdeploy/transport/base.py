"""The seam between agent/manager logic and the network (``docs/protocol.md`` §1, §3, §6.1).

The manager programs against :class:`ManagerTransport`, the agent against
:class:`AgentTransport`. Three implementations exist: ``transport.zmq`` (CurveZMQ, the
default), ``transport.http_*`` (sealed HTTP long-polls, ADR 0013) and ``transport.memory``
(in-process, for unit tests of agent and manager logic); all pass the same behavioural test
suite (``tests/transport/test_links.py``). ``transport.multi`` serves several at once.

Contracts shared by every implementation:

* Messages are :data:`~swarmdeploy.protocol.messages.Message` values; they are encoded and
  decoded by the protocol layer (an invalid outgoing message raises ``MessageError``).
* ``send`` never blocks and never raises for an absent or slow peer: it returns ``False``
  and the protocol's acknowledgements recover (§6). It raises only for misuse.
* The manager learns the sender of every message from the authenticated connection: what
  ``recv`` returns as target id was proven by the link, never claimed by the message.
* Long-lived objects carry a :class:`Lifecycle`; calls in the wrong state raise
  :class:`~swarmdeploy.transport.errors.TransportStateError`.
* One task consumes ``recv``; ``close`` wakes it (the agent side returns a ``closed``
  :class:`LinkEvent`, the manager side raises :class:`TransportClosed`).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING

from swarmdeploy.crypto.curve import CurveKeyPair, validate_public_key
from swarmdeploy.crypto.errors import InvalidKey
from swarmdeploy.protocol.messages import (
    ALL_TOPIC,
    MAX_MESSAGE_BYTES,
    Hint,
    Message,
    id_topic,
    tag_topic,
    valid_name,
)
from swarmdeploy.transport.errors import (
    TransportClosed,
    TransportConfigError,
    TransportStateError,
)

if TYPE_CHECKING:  # link.py imports this module
    from swarmdeploy.transport.link import AgentInbox


class Lifecycle(enum.StrEnum):
    """``new -> open -> closed``; nothing goes back."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class LinkState(enum.StrEnum):
    """State of an agent's link to the manager (``docs/protocol.md`` §6.1)."""

    IDLE = "idle"  # connect() not called yet
    CONNECTING = "connecting"  # trying, or reconnecting after a lost link
    CONNECTED = "connected"  # handshake done: messages flow
    AUTH_FAILED = "auth_failed"  # the manager refused our key (revoked, not registered)
    HANDSHAKE_FAILED = "handshake_failed"  # wrong manager key / not a swarmdeploy manager
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class LinkEvent:
    """A change of the agent's link state, delivered by :meth:`AgentTransport.recv`."""

    state: LinkState
    detail: str = ""


def _check_port(port: int, what: str, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise TransportConfigError(f"{what} must be between {low} and 65535, got {port}")


def check_public_key(key: str, what: str) -> None:
    """Raise :class:`TransportConfigError` unless ``key`` is a Z85 CurveZMQ public key."""
    try:
        validate_public_key(key)
    except InvalidKey as exc:
        raise TransportConfigError(f"{what}: {exc}") from None


@dataclasses.dataclass(slots=True)
class WireStats:
    """Bytes a transport put on and took off the wire (MessagePack frames, before CURVE),
    and how many frames went and came compressed (``docs/protocol.md`` §2.1)."""

    sent_bytes: int = 0
    received_bytes: int = 0
    sent_compressed: int = 0
    received_compressed: int = 0

    def sent(self, data: bytes | memoryview) -> None:
        """Count one outgoing frame."""
        self.sent_bytes += len(data)
        self.sent_compressed += is_envelope(data)

    def received(self, data: bytes | memoryview) -> None:
        """Count one incoming frame."""
        self.received_bytes += len(data)
        self.received_compressed += is_envelope(data)


#: How a compressed envelope's MessagePack begins: a map, then ``type`` or ``v`` first; the
#: envelope is packed as {"type": "compressed", ...} (see ``protocol.compression``).
_ENVELOPE_MARK = b"\xa4type\xaacompressed"


def is_envelope(data: bytes | memoryview) -> bool:
    """Whether a frame is a compressed envelope (for counting only, never for decoding)."""
    return bytes(data[1:17]) == _ENVELOPE_MARK


@dataclasses.dataclass(frozen=True, slots=True)
class ManagerLinkConfig:
    """Where and how the manager listens. Port 0 picks a free port (tests).

    ``zmq_sub_port`` carries the addressed link (agents' DEALERs connect to a ROUTER) and
    ``zmq_pub_port`` the hint link of agents older than ADR 0015 (PUB); the names are the
    manager's command-line options.
    """

    keys: CurveKeyPair
    bind_host: str = "127.0.0.1"
    zmq_sub_port: int = 5557
    zmq_pub_port: int = 5556
    max_message_bytes: int = MAX_MESSAGE_BYTES
    send_hwm: int = 1000
    rebind_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        check_public_key(self.keys.public, "manager public key")
        _check_port(self.zmq_sub_port, "zmq_sub_port", allow_zero=True)
        _check_port(self.zmq_pub_port, "zmq_pub_port", allow_zero=True)
        if self.rebind_timeout_s <= 0:
            raise TransportConfigError("rebind_timeout_s must be positive")
        if self.max_message_bytes < 1024 or self.send_hwm < 1:
            raise TransportConfigError("max_message_bytes and send_hwm are too small")


@dataclasses.dataclass(frozen=True, slots=True)
class AgentLinkConfig:
    """How an agent reaches its manager; values come from registration (seed 003 §4.3).

    Reconnects start at ``reconnect_ivl_s`` and double up to ``reconnect_ivl_max_s`` (with
    jitter), also after a refused handshake.
    """

    target_id: str
    keys: CurveKeyPair
    manager_public_key: str
    manager_host: str = "127.0.0.1"
    zmq_sub_port: int = 5557
    zmq_pub_port: int = 5556
    reconnect_ivl_s: float = 0.5
    reconnect_ivl_max_s: float = 30.0
    heartbeat_ivl_s: float = 10.0
    heartbeat_timeout_s: float = 30.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if not valid_name(self.target_id):
            raise TransportConfigError(f"invalid target id {self.target_id!r}")
        check_public_key(self.keys.public, "agent public key")
        check_public_key(self.manager_public_key, "manager public key")
        _check_port(self.zmq_sub_port, "zmq_sub_port", allow_zero=False)
        _check_port(self.zmq_pub_port, "zmq_pub_port", allow_zero=False)
        if not 0 < self.reconnect_ivl_s <= self.reconnect_ivl_max_s:
            raise TransportConfigError("need 0 < reconnect_ivl_s <= reconnect_ivl_max_s")
        if min(self.heartbeat_ivl_s, self.heartbeat_timeout_s) <= 0 or self.queue_size < 1:
            raise TransportConfigError("intervals and queue_size must be positive")


class _Guarded:
    """Lifecycle bookkeeping shared by the transports (house style: misuse raises)."""

    _lifecycle: Lifecycle = Lifecycle.NEW

    @property
    def lifecycle(self) -> Lifecycle:
        """Where this object is in ``new -> open -> closed``."""
        return self._lifecycle

    def _require(self, *allowed: Lifecycle) -> None:
        if self._lifecycle in allowed:
            return
        if self._lifecycle is Lifecycle.CLOSED:
            raise TransportClosed(f"{type(self).__name__} is closed")
        raise TransportStateError(
            f"{type(self).__name__} is {self._lifecycle.value}; "
            f"allowed: {', '.join(s.value for s in allowed)}"
        )


class ManagerTransport(_Guarded, abc.ABC):
    """The manager's side of every agent link. ``wire`` counts the bytes of a transport that
    puts frames on a wire (``None`` for one that does not)."""

    wire: WireStats | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Start serving (``new -> open``): authentication first, then the bound sockets.

        Fill the allow-list with :meth:`allow` before calling it. Raises ``BindError``.
        """

    @abc.abstractmethod
    async def send(self, target_id: str, msg: Message) -> bool:
        """Hand ``msg`` to the live connection of ``target_id``.

        Returns ``False`` when the target has no authenticated connection (no ``hello``
        since the last drop) or its queue is full. ``msg`` must be a manager-to-agent type
        other than ``hint``.
        """

    @abc.abstractmethod
    async def publish(self, topic: bytes, msg: Hint) -> None:
        """Fan a hint out to every agent subscribed to ``topic`` (``id_topic``, ``tag_topic``,
        ``ALL_TOPIC``). Best effort; hints carry no secrets (§6.9)."""

    @abc.abstractmethod
    async def recv(self, timeout_s: float | None = None) -> tuple[str, Message] | None:
        """The next authenticated agent message as ``(target_id, message)``.

        Messages that fail authentication, decoding or the direction check are dropped (and
        answered with an ``error`` when the sender is authenticated). Returns ``None`` after
        ``timeout_s``; raises ``TransportClosed`` once closed.
        """

    @abc.abstractmethod
    async def allow(self, target_id: str, curve_public_key: str) -> None:
        """Accept ``target_id``'s key from now on (allowed in ``new`` and ``open``).

        A different key for a target that already had one replaces it and drops the old
        key's connection like :meth:`revoke`. Raises ``TransportConfigError`` for an invalid
        id or key, or a key that belongs to another target.
        """

    @abc.abstractmethod
    async def revoke(self, target_id: str) -> None:
        """Forget ``target_id``'s key and drop its live connection at once (§3).

        Over ZeroMQ other agents lose their connection too and reconnect on their own (ADR
        0002); over HTTP they are not disturbed (ADR 0013). Idempotent.
        """

    @abc.abstractmethod
    def is_allowed(self, target_id: str) -> bool:
        """Whether ``target_id`` currently has a key in the allow-list."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every socket; idempotent. Wakes a pending :meth:`recv`."""


class AgentTransport(_Guarded, abc.ABC):
    """The agent's link to its manager.

    The link state, the event queue and the hint topics are kept alike by every transport:
    a subclass sets ``config``, ``_inbox`` (link events and messages in arrival order) and
    ``_topics`` in its constructor, feeds ``_inbox`` from its connection, and overrides
    :meth:`_subscribe` if it must tell a socket about changed topics.
    """

    config: AgentLinkConfig
    _inbox: AgentInbox
    _topics: set[bytes]

    @property
    def state(self) -> LinkState:
        """The current link state."""
        return self._inbox.state

    @abc.abstractmethod
    async def connect(self) -> None:
        """Start connecting out (``new -> open``) and keep reconnecting until closed.

        Returns at once; progress arrives as :class:`LinkEvent` from :meth:`recv`.
        """

    @abc.abstractmethod
    async def send(self, msg: Message) -> bool:
        """Hand ``msg`` to the link; ``False`` when not connected or the queue is full."""

    async def recv(self, timeout_s: float | None = None) -> Message | LinkEvent | None:
        """The next message from the manager or link-state change, in arrival order.

        ``None`` after ``timeout_s``. On every ``connected`` event the agent must send
        ``hello`` first (§6.2). After :meth:`close` a pending call returns a ``closed``
        event and later calls raise ``TransportClosed`` (once the queue is empty).
        """
        if self._lifecycle is Lifecycle.CLOSED and self._inbox.empty():
            raise TransportClosed(f"{type(self).__name__} is closed")
        self._require(Lifecycle.OPEN, Lifecycle.CLOSED)
        return await self._inbox.get(timeout_s)

    async def set_tags(self, tags: Iterable[str]) -> None:
        """Take hints for exactly these tags from now on (plus own id and ``ALL``)."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        topics = {id_topic(self.config.target_id), ALL_TOPIC}
        topics.update(tag_topic(tag) for tag in tags)
        await self._subscribe(topics)
        self._topics = topics

    async def _subscribe(self, topics: set[bytes]) -> None:
        """Change a live subscription from ``self._topics`` to ``topics`` (called before
        ``_topics`` is replaced). Transports that send their topics with every request
        (HTTP) or match them in process (memory) need nothing here."""

    async def wait_state(self, *states: LinkState, timeout_s: float) -> LinkState:
        """Wait until the link is in one of ``states`` (without consuming events).

        Raises ``TimeoutError`` after ``timeout_s``.
        """
        return await self._inbox.wait_state(states, timeout_s)

    @abc.abstractmethod
    async def close(self, linger_s: float = 0.0) -> None:
        """Close the link; idempotent. ``linger_s`` lets a last message (``bye``) leave."""
