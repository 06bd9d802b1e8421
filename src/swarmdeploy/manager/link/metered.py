"""A :class:`ManagerTransport` that counts what the manager sends (docs/metrics.md).

The link's parts send through this wrapper; the link server keeps the real transport for its
lifecycle. Received messages are counted by the server's receive loop.
"""

from __future__ import annotations

from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.protocol.messages import Hint, Message, message_type
from swarmdeploy.transport.base import Lifecycle, ManagerTransport


class MeteredTransport(ManagerTransport):
    """Delegates to ``inner``; counts each :meth:`send` by wire type and outcome."""

    def __init__(self, inner: ManagerTransport, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    @property
    def lifecycle(self) -> Lifecycle:
        """The wrapped transport's lifecycle."""
        return self.inner.lifecycle

    async def start(self) -> None:
        """Start the wrapped transport."""
        await self.inner.start()

    async def send(self, target_id: str, msg: Message) -> bool:
        """Send through the wrapped transport and count the message."""
        delivered = await self.inner.send(target_id, msg)
        self._metrics.count_sent(message_type(msg), delivered=delivered)
        return delivered

    async def publish(self, topic: bytes, msg: Hint) -> None:
        """Publish through the wrapped transport and count the hint."""
        await self.inner.publish(topic, msg)
        self._metrics.count_sent(message_type(msg), delivered=True)

    async def recv(self, timeout_s: float | None = None) -> tuple[str, Message] | None:
        """Receive from the wrapped transport (counted by the caller)."""
        return await self.inner.recv(timeout_s)

    async def allow(self, target_id: str, curve_public_key: str) -> None:
        """Admit a key on the wrapped transport."""
        await self.inner.allow(target_id, curve_public_key)

    async def revoke(self, target_id: str) -> None:
        """Revoke a key on the wrapped transport."""
        await self.inner.revoke(target_id)

    def is_allowed(self, target_id: str) -> bool:
        """Whether the wrapped transport admits ``target_id``."""
        return self.inner.is_allowed(target_id)

    async def close(self) -> None:
        """Close the wrapped transport."""
        await self.inner.close()
