"""Pieces shared by the transport implementations: direction checks, the manager's allow-list,
backoff, agent inbox."""

from __future__ import annotations

import asyncio
import random

from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    AGENT_TO_MANAGER,
    ALL_TOPIC,
    HINT_TYPES,
    MANAGER_TO_AGENT,
    MAX_MESSAGE_BYTES,
    Hint,
    Message,
    UnknownMessage,
    decode,
    message_type,
    valid_name,
)
from swarmdeploy.transport.base import LinkEvent, LinkState, check_public_key
from swarmdeploy.transport.errors import TransportConfigError


def decode_from_agent(
    data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Message:
    """Decode what an agent sent; refuse (``MessageError``) garbage and manager-only types."""
    msg = decode(data, max_bytes=max_bytes)
    if not isinstance(msg, UnknownMessage) and message_type(msg) not in AGENT_TO_MANAGER:
        raise MessageError(f"agents cannot send {message_type(msg)!r}", "wrong_direction")
    return msg


class AllowList:
    """The manager's allow-list (§3): one CurveZMQ key per target, one target per key."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}  # target id -> Z85 public key
        self._owners: dict[str, str] = {}  # Z85 public key -> target id (ZAP User-Id)

    def owner(self, key: str) -> str | None:
        """The target id ``key`` is allowed for, if any."""
        return self._owners.get(key)

    def __contains__(self, target_id: object) -> bool:
        return target_id in self._keys

    def allow(self, target_id: str, key: str) -> str | None:
        """Allow ``key`` for ``target_id``; returns the target's previous key (``None`` if it
        had none) and ``key`` itself when nothing changed. Raises
        :class:`TransportConfigError` for a bad id or key, or a key owned by another target."""
        if not valid_name(target_id):
            raise TransportConfigError(f"invalid target id {target_id!r}")
        check_public_key(key, f"key of {target_id}")
        owner = self._owners.get(key)
        if owner is not None and owner != target_id:
            raise TransportConfigError(f"the key already belongs to target {owner!r}")
        old = self._keys.get(target_id)
        if old is not None and old != key:
            del self._owners[old]
        self._keys[target_id] = key
        self._owners[key] = target_id
        return old

    def revoke(self, target_id: str) -> bool:
        """Drop the target's key; returns whether it had one."""
        key = self._keys.pop(target_id, None)
        if key is None:
            return False
        del self._owners[key]
        return True


def require_addressed_outgoing(msg: Message) -> None:
    """Refuse (``MessageError``, ``wrong_direction``) what the manager may not send to one
    agent: agent-to-manager types and hints (hints go through ``publish``)."""
    kind = message_type(msg)
    if isinstance(msg, UnknownMessage):
        return  # a newer message type relayed as is
    if kind not in MANAGER_TO_AGENT or kind in HINT_TYPES:
        raise MessageError(f"the manager cannot send {kind!r} to an agent", "wrong_direction")


def require_hint(msg: Message) -> None:
    """Only ``hint`` messages are published (§6.9: no secrets in hints)."""
    if not isinstance(msg, Hint):
        kind = message_type(msg)
        raise MessageError(f"only hints may be published, not {kind!r}", "wrong_direction")


def require_agent_outgoing(msg: Message) -> None:
    """Refuse (``MessageError``, ``wrong_direction``) manager-only types sent by an agent."""
    kind = message_type(msg)
    if not isinstance(msg, UnknownMessage) and kind not in AGENT_TO_MANAGER:
        raise MessageError(f"an agent cannot send {kind!r}", "wrong_direction")


def check_topic(topic: bytes) -> None:
    """A hint topic must come from ``id_topic``/``tag_topic`` or be ``ALL_TOPIC``."""
    ok = topic == ALL_TOPIC or (
        topic.endswith(b"\x00") and topic.startswith((b"ID-", b"TAG-")) and topic.count(0) == 1
    )
    if not ok:
        raise MessageError(f"invalid hint topic {topic!r}", "invalid_message")


def backoff_s(attempt: int, first_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: ``first_s * 2**attempt`` capped at ``max_s``, then
    scaled by a random factor in [0.5, 1) so that a fleet does not reconnect in lockstep."""
    step: float = first_s * float(2 ** min(attempt, 30))
    return min(max_s, step) * random.uniform(0.5, 1.0)


class AgentInbox:
    """Messages and link events in arrival order, plus the current link state.

    One consumer calls :meth:`get`; any number of tasks may :meth:`wait_state`.
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Message | LinkEvent] = asyncio.Queue(maxsize)
        self._cond = asyncio.Condition()
        self.state = LinkState.IDLE

    async def put(self, item: Message) -> None:
        """Queue a message, waiting for room (back-pressure on the link)."""
        await self._queue.put(item)

    def offer(self, item: Message) -> bool:
        """Queue a message if there is room; ``False`` otherwise."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    async def set_state(self, state: LinkState, detail: str = "") -> None:
        """Record a state change and queue its :class:`LinkEvent` (repeats are ignored)."""
        if state is self.state or self.state is LinkState.CLOSED:
            return
        async with self._cond:
            self.state = state
            self._cond.notify_all()
        self._force(LinkEvent(state, detail))

    def _force(self, event: LinkEvent) -> None:
        # Events are never lost: when the queue is full the oldest item makes room.
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def get(self, timeout_s: float | None) -> Message | LinkEvent | None:
        """The next item, or ``None`` after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._queue.get()
        except TimeoutError:
            return None

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return self._queue.empty()

    async def wait_state(self, states: tuple[LinkState, ...], timeout_s: float) -> LinkState:
        """Wait until the state is one of ``states``; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s), self._cond:
            await self._cond.wait_for(lambda: self.state in states)
        return self.state
