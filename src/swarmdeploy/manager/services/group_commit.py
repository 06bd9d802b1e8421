"""Group commit: the link's writes of many agents in one transaction
(docs/adr/0011-live-deployments-and-group-commit.md).

State changes (through :class:`~.task_states.TaskStates`, the one choke point), agent log
batches (:class:`~.logs.LogService`) and contact updates are queued here; a flusher task
stores what is queued in one ``Storage.commit_batch`` transaction after a short window
(``window_s``) or as soon as ``max_items`` are waiting, and while one transaction runs the
next batch fills. Every caller awaits the outcome of its own write, so the link acknowledges
a report only after the transaction holding it committed ("persisted, then acked",
docs/protocol.md §6.4).

A failing batch does not take the others' writes with it silently: the batch is tried again
item by item, and each item that still fails raises its error in its own caller (the agent
then gets no acknowledgement and sends again). A write is never stored twice by a retry:
state writes are compare-and-set, log lines are unique by ``(target, seq)``, contact updates
overwrite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import StorageUnavailable
from swarmdeploy.storage.records import ContactWrite, LogRecord, StateWrite, WriteBatch

log = logging.getLogger(__name__)

Write = StateWrite | ContactWrite | tuple[LogRecord, ...]


@dataclasses.dataclass(slots=True)
class _Item:
    write: Write
    done: asyncio.Future[bool | int | None]


class GroupCommit:
    """Queues writes and stores them in shared transactions (see the module docstring).
    Single event loop."""

    def __init__(self, storage: Storage, *, window_s: float = 0.002, max_items: int = 256) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if window_s < 0:
            raise ValueError("window_s must not be negative")
        self._storage = storage
        self._window_s = window_s
        self._max = max_items
        self._queue: list[_Item] = []
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        #: Transactions committed, writes in them, batches tried again item by item.
        self.batches = 0
        self.items = 0
        self.retried = 0

    async def set_state(self, write: StateWrite) -> bool:
        """Compare-and-set one per-target row; whether it changed (after the commit)."""
        return bool(await self._submit(write))

    async def add_logs(self, lines: Sequence[LogRecord]) -> int:
        """Store log lines (known ``(target, seq)`` skipped); how many were stored."""
        if not lines:
            return 0
        result = await self._submit(tuple(lines))
        assert isinstance(result, int)
        return result

    async def touch(self, contact: ContactWrite) -> None:
        """Record a contact (and health report); unknown targets are ignored."""
        await self._submit(contact)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued write is committed (or failed): before the storage is
        closed, so that no transaction is left open. Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout_s):
            while self._flusher is not None:
                await asyncio.wait([self._flusher])

    async def _submit(self, write: Write) -> bool | int | None:
        loop = asyncio.get_running_loop()
        item = _Item(write, loop.create_future())
        item.done.add_done_callback(_retrieve)
        self._queue.append(item)
        if len(self._queue) >= self._max:
            self._full.set()
        if self._flusher is None:
            self._flusher = loop.create_task(self._run(), name="group-commit")
        # Not shielded: a cancelled caller cancels only its own future; its write stays in
        # the batch, and the commit skips a future that is done already.
        return await item.done

    async def _run(self) -> None:
        try:
            if len(self._queue) < self._max and self._window_s > 0:
                try:
                    async with asyncio.timeout(self._window_s):
                        await self._full.wait()
                except TimeoutError:
                    pass
            while self._queue:
                self._full.clear()
                items, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._commit(items)
        finally:
            self._flusher = None
            left, self._queue = self._queue, []  # only when cancelled (the manager stops)
            _fail(left, StorageUnavailable("the manager is stopping"))

    async def _commit(self, items: list[_Item]) -> None:
        try:
            result = await self._storage.commit_batch(_batch(items))
        except asyncio.CancelledError:
            _fail(items, StorageUnavailable("the manager is stopping"))
            raise
        except Exception as exc:  # the batch failed: try each write alone (module docstring)
            if len(items) == 1:
                _fail(items, exc)
                return
            self.retried += 1
            log.warning("a group commit of %d writes failed (%s); storing them one by one",
                        len(items), exc)  # fmt: skip
            for item in items:
                await self._commit([item])
            return
        self.batches += 1
        self.items += len(items)
        states = iter(result.states)
        stored = iter(result.logs)
        for item in items:
            value: bool | int | None = None
            if isinstance(item.write, StateWrite):
                value = next(states)
            elif isinstance(item.write, tuple):
                value = next(stored)
            if not item.done.done():
                item.done.set_result(value)


def _batch(items: list[_Item]) -> WriteBatch:
    """The items' writes as one batch (each kind in queue order)."""
    states = [i.write for i in items if isinstance(i.write, StateWrite)]
    logs = [i.write for i in items if isinstance(i.write, tuple)]
    contacts = [i.write for i in items if isinstance(i.write, ContactWrite)]
    return WriteBatch(states=states, logs=logs, contacts=contacts)


def _fail(items: list[_Item], exc: BaseException) -> None:
    for item in items:
        if not item.done.done():
            item.done.set_exception(exc)


def _retrieve(done: asyncio.Future[bool | int | None]) -> None:
    """Mark an error as seen even when its caller was cancelled meanwhile."""
    if not done.cancelled():
        done.exception()
