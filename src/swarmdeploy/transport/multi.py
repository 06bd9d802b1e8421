"""One :class:`ManagerTransport` over several: the manager serves ZeroMQ and HTTP agents at once.

The link server sees one transport (ADR 0013). Messages from every inner transport are merged
in :meth:`MultiManagerTransport.recv`; a message *to* a target goes out through the transport
that target last spoke on (:meth:`transport_of`), hints go out on all, and ``allow``/``revoke``
apply to all, so a deleted target is cut off on every transport at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from swarmdeploy.protocol.messages import Hint, Message
from swarmdeploy.transport.base import Lifecycle, ManagerTransport
from swarmdeploy.transport.errors import TransportClosed


class MultiManagerTransport(ManagerTransport):
    """Merges named transports, e.g. ``{"zmq": ..., "http": ...}``."""

    def __init__(self, transports: dict[str, ManagerTransport]) -> None:
        if not transports:
            raise ValueError("at least one transport is needed")
        self.transports = dict(transports)
        zmq = self.transports.get("zmq")
        self.wire = zmq.wire if zmq is not None else None  # bytes of the ZeroMQ link
        self._last: dict[str, str] = {}  # target id -> name of the transport it last used
        self._merged: asyncio.Queue[tuple[str, str, Message] | None] = asyncio.Queue(1)
        self._pumps: list[asyncio.Task[None]] = []

    def transport_of(self, target_id: str) -> str | None:
        """The name of the transport ``target_id`` last spoke on (``None``: not yet)."""
        return self._last.get(target_id)

    async def start(self) -> None:
        """See :meth:`ManagerTransport.start`: start every transport, then merge."""
        self._require(Lifecycle.NEW)
        started: list[ManagerTransport] = []
        try:
            for transport in self.transports.values():
                await transport.start()
                started.append(transport)
        except BaseException:
            for transport in started:
                await transport.close()
            self._lifecycle = Lifecycle.CLOSED
            raise
        self._lifecycle = Lifecycle.OPEN
        self._pumps = [
            asyncio.create_task(self._pump(name, t), name=f"link-recv:{name}")
            for name, t in self.transports.items()
        ]

    async def _pump(self, name: str, transport: ManagerTransport) -> None:
        while True:
            try:
                got = await transport.recv()
            except TransportClosed:
                return
            if got is not None:
                await self._merged.put((name, *got))

    async def send(self, target_id: str, msg: Message) -> bool:
        """See :meth:`ManagerTransport.send`."""
        self._require(Lifecycle.OPEN)
        name = self._last.get(target_id)
        if name is not None:
            return await self.transports[name].send(target_id, msg)
        for transport in self.transports.values():
            if await transport.send(target_id, msg):
                return True
        return False

    async def publish(self, topic: bytes, msg: Hint) -> None:
        """See :meth:`ManagerTransport.publish`."""
        self._require(Lifecycle.OPEN)
        for transport in self.transports.values():
            await transport.publish(topic, msg)

    async def recv(self, timeout_s: float | None = None) -> tuple[str, Message] | None:
        """See :meth:`ManagerTransport.recv`."""
        self._require(Lifecycle.OPEN)
        try:
            async with asyncio.timeout(timeout_s):
                item = await self._merged.get()
        except TimeoutError:
            return None
        if item is None:
            raise TransportClosed("MultiManagerTransport is closed")
        name, target_id, msg = item
        self._last[target_id] = name
        return target_id, msg

    async def allow(self, target_id: str, curve_public_key: str) -> None:
        """See :meth:`ManagerTransport.allow`."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        for transport in self.transports.values():
            await transport.allow(target_id, curve_public_key)

    async def revoke(self, target_id: str) -> None:
        """See :meth:`ManagerTransport.revoke`: on every transport."""
        self._require(Lifecycle.NEW, Lifecycle.OPEN)
        self._last.pop(target_id, None)
        for transport in self.transports.values():
            await transport.revoke(target_id)

    def is_allowed(self, target_id: str) -> bool:
        """See :meth:`ManagerTransport.is_allowed`."""
        return any(t.is_allowed(target_id) for t in self.transports.values())

    async def close(self) -> None:
        """See :meth:`ManagerTransport.close`."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        for transport in self.transports.values():
            await transport.close()
        for task in self._pumps:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(asyncio.QueueFull):
            while not self._merged.empty():
                self._merged.get_nowait()
            self._merged.put_nowait(None)
