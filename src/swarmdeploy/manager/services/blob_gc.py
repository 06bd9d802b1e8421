"""Blob garbage collection and the sweep of files that interrupted work leaves behind
(docs/storage.md "Blob lifecycle").

The rule: a blob (content-addressed by SHA-256) is deleted only when all three hold --

1. it was last stored more than ``grace_ms`` ago (1 hour by default). A task being created
   stores its archive *before* its row exists, and a build upload is adopted into the store
   *before* its record says complete; the grace period covers those windows. Storing bytes
   that are stored already restarts the period (:class:`~.blobs.BlobStore` moves the time).
2. no stored record references it: :meth:`~swarmdeploy.storage.base.Storage.referenced_digests`
   (task archives, upload records, the ``/artifacts`` catalogue, signed manifests of live
   tasks that reuse another task's artifacts) -- one read per batch of digests;
3. it is still unreferenced when checked again *after* it was detached (renamed out of sight
   atomically, and only if it was not stored again since it was listed). A blob found
   referenced then is restored; only detached blobs are ever unlinked.

Between the first check and the detach a new reference can appear only with a new storing
of the bytes (which moves the time: step 3's detach refuses) or a new record (found by the
second check). Runs of one collector are serialised by a lock; one manager process owns its
data directory (its SQLite file and keys live there), so no other process detaches.

When it runs: after a task is deleted (:meth:`BlobCollector.task_deleted`, its digests: what
is past the grace period goes at once, the rest with a later pass), every ``interval_s``
over the whole store (:meth:`BlobCollector.periodic`), and at start
(:meth:`BlobCollector.at_start`: files of interrupted work only). Every pass logs and
counts (``/metrics``) the blobs and bytes it freed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from swarmdeploy.manager.background import PeriodicJob
from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.services.blobs import BlobInfo, BlobStore
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import StorageError

log = logging.getLogger(__name__)

#: Blobs stored more recently than this are never collected.
GRACE_MS = 3_600_000
#: How often the whole store is collected (and old temporary and spool files removed).
INTERVAL_S = 600.0
#: Digests per reference check: the detach -> re-check window covers at most this many.
_BATCH = 200
_SPOOL_SUFFIX = ".part"


@dataclasses.dataclass(frozen=True, slots=True)
class Freed:
    """What one collection deleted."""

    blobs: int = 0
    size_bytes: int = 0

    def __add__(self, other: Freed) -> Freed:
        return Freed(self.blobs + other.blobs, self.size_bytes + other.size_bytes)


class OrphanSweeper(Protocol):
    """Removes partial upload files no persisted upload needs (the agent link's
    :class:`~swarmdeploy.manager.link.uploads.UploadReceiver`)."""

    async def remove_orphans(self) -> int:
        """Remove them; returns how many files went."""


def _sweep_spool(directory: Path, before_ms: int | None) -> int:
    """Remove ``*.part`` files in ``directory`` last written before ``before_ms`` (all with
    ``None``); returns how many."""
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.iterdir():
        if not (path.name.endswith(_SPOOL_SUFFIX) and path.is_file()):
            continue
        if before_ms is None or path.stat().st_mtime_ns // 1_000_000 < before_ms:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class BlobCollector:
    """Deletes unreferenced blobs by the rule of the module docstring.

    ``spool_dir`` is where the REST API streams multipart archives (``DATA_DIR/incoming``):
    its ``*.part`` files belong to requests in flight and are never recorded in storage, so
    those of a crashed process are removed at start and stale ones (older than the grace
    period) by every periodic pass.
    """

    def __init__(
        self,
        storage: Storage,
        blobs: BlobStore,
        *,
        clock: Clock,
        grace_ms: int = GRACE_MS,
        interval_s: float = INTERVAL_S,
        metrics: Metrics | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        if grace_ms <= 0:
            raise ValueError("grace_ms must be positive")
        self._storage = storage
        self._blobs = blobs
        self._clock = clock
        self._grace_ms = grace_ms
        self._interval_s = interval_s
        self._metrics = metrics
        self._spool_dir = spool_dir
        self._lock = asyncio.Lock()

    async def collect(self, digests: Iterable[str] | None = None) -> Freed:
        """Delete those of ``digests`` (every stored blob with ``None``) that the rule
        allows; returns what was freed and logs it."""
        async with self._lock:
            if digests is None:
                found = await self._blobs.list_blobs()
            else:
                infos = [await self._blobs.info(d) for d in sorted(set(digests))]
                found = [i for i in infos if i is not None]
            cutoff = self._clock() - self._grace_ms
            old = [b for b in found if b.stored_at_ms < cutoff]
            freed = Freed()
            for start in range(0, len(old), _BATCH):
                freed += await self._collect_batch(old[start : start + _BATCH])
        if freed.blobs:
            log.info("blob collection freed %d blob(s), %d bytes", freed.blobs, freed.size_bytes)
            if self._metrics is not None:
                self._metrics.count_blobs_freed(freed.blobs, freed.size_bytes)
        return freed

    async def _collect_batch(self, batch: Sequence[BlobInfo]) -> Freed:
        used = await self._storage.referenced_digests([b.digest for b in batch])
        detached = []
        for info in batch:
            if info.digest not in used and (taken := await self._blobs.detach(info)) is not None:
                detached.append(taken)
        if not detached:
            return Freed()
        try:
            used = await self._storage.referenced_digests([d.digest for d in detached])
        except BaseException:
            for aside in detached:  # unknown: keep them (a later pass decides again)
                await self._blobs.restore(aside)
            raise
        freed = Freed()
        for aside in detached:
            if aside.digest in used:
                await self._blobs.restore(aside)
                continue
            await self._blobs.discard(aside)
            log.debug("blob %s (%d bytes) deleted: unreferenced", aside.digest, aside.size_bytes)
            freed += Freed(1, aside.size_bytes)
        return freed

    async def task_deleted(self, task_id: str, digests: frozenset[str]) -> None:
        """A task was deleted: collect the blobs it referenced (``TaskService`` listener).
        Those within the grace period stay for a later :meth:`periodic` pass."""
        freed = await self.collect(digests)
        log.info("task %s deleted: %d of its %d blob(s) freed now (%d bytes)",
                 task_id, freed.blobs, len(digests), freed.size_bytes)  # fmt: skip

    async def periodic(self) -> Freed:
        """One periodic pass: restore blobs an interrupted pass left detached, remove
        temporary and spool files older than the grace period, collect the whole store."""
        before_ms = self._clock() - self._grace_ms
        async with self._lock:
            temporaries = await self._blobs.tidy(temporary_before_ms=before_ms)
        spooled = await self._sweep_spool(before_ms)
        if temporaries or spooled:
            log.info("removed %d stale temporary blob file(s), %d stale spool file(s)",
                     temporaries, spooled)  # fmt: skip
        return await self.collect()

    async def at_start(self, uploads: OrphanSweeper | None) -> None:
        """Before serving: restore detached blobs, remove every temporary blob file and
        spooled archive (their writers died with the previous process) and, with the agent
        link's ``uploads``, the partial uploads no persisted upload record still needs
        (resumable ones keep their file). A failure is logged, not raised."""
        try:
            async with self._lock:
                temporaries = await self._blobs.tidy(temporary_before_ms=None)
            spooled = await self._sweep_spool(None)
            partial = 0 if uploads is None else await uploads.remove_orphans()
        except (OSError, StorageError) as exc:  # housekeeping: the manager starts anyway
            log.warning("start-up sweep incomplete (periodic passes go on): %s", exc)
            return
        log.info(
            "start-up sweep: %d temporary blob file(s), %d spooled archive(s), "
            "%d orphaned partial upload(s) removed", temporaries, spooled, partial,
        )  # fmt: skip

    async def _sweep_spool(self, before_ms: int | None) -> int:
        if self._spool_dir is None:
            return 0
        return await asyncio.to_thread(_sweep_spool, self._spool_dir, before_ms)

    def job(self) -> PeriodicJob:
        """The background job running :meth:`periodic` every ``interval_s``."""
        return PeriodicJob("blob-gc", self._interval_s, self.periodic)
