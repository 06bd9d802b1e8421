"""What a target receives for a task: the signed package and its announcement
(docs/protocol.md §4.2, §6.3; docs/security.md "The manager's last check").

A target's part depends on its role: the build host gets the build manifest, deploy targets
the deploy manifest. Both were built once and signed with the submitter's operator key
(:mod:`swarmdeploy.manager.services.task_signing`); the stored bytes, signature and
certificate are what the target receives -- never a manifest built again.

Before anything of a task leaves the manager, :meth:`Packages.package` checks that

* the stored manifest still verifies against its stored signature and certificate,
* the signing key exists and is not revoked,
* the task record still says what was signed (commands, selector, expiry, sandbox policy:
  a task edited in the database after signing is refused), and
* every artifact blob still has the signed size and SHA-256 (hashed once per process).

Any failure raises :class:`DeliveryRefused` with a stable ``code``; the caller marks the
target's row and tells the agent. Agents verify everything again: these checks keep a
tampered manager database from reaching the fleet as a confusing flood of refusals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Literal

import msgspec

from swarmdeploy.crypto.errors import CryptoError
from swarmdeploy.crypto.signing import check_signed
from swarmdeploy.manager.errors import ManagerError
from swarmdeploy.manager.link.unpacked import UnpackedMeter
from swarmdeploy.manager.services.blob_cipher import BlobDamaged
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.services.task_signing import task_manifest
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.manifest import (
    ArtifactInfo,
    DeviceRequirements,
    TaskManifest,
    decode_manifest,
)
from swarmdeploy.protocol.messages import Announce, Task
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TaskRecord, TaskSignatureRecord

log = logging.getLogger(__name__)

Role = Literal["deploy", "build"]
_HASH_PIECE = 1024 * 1024
_CACHE_MAX = 1024
_VERIFIED_MAX = 4096
#: A task's rows are stored before its signature; until this old, a missing signature
#: means "being signed", not "unsigned".
SIGNING_GRACE_MS = 60_000


class DeliveryRefused(ManagerError):
    """The manager will not send this task: ``code`` says why (docs/security.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class Package:
    """A role's part of a task as signed: the exact manifest bytes, signature, certificate
    and the decoded manifest (its artifacts say which blobs may be served, in which chunks)."""

    manifest: TaskManifest
    signed: TaskSignatureRecord
    #: Sum of the artifacts' unpacked sizes (0: unknown), see :mod:`.unpacked`.
    unpacked_bytes: int = 0

    @property
    def artifacts(self) -> list[ArtifactInfo]:
        """The signed artifacts."""
        return self.manifest.artifacts

    def message(self) -> Task:
        """The ``task`` message carrying the stored bytes unchanged."""
        s = self.signed
        return Task(
            task_id=s.task_id,
            manifest=s.manifest,
            signature=s.signature,
            certificate=s.certificate,
        )


def announcement(task: TaskRecord, package: Package, *, attempt: int = 0) -> Announce:
    """First stage of delivery (§6.3): enough to assess the task, nothing to run.

    ``arch`` and the minima come from the signed manifest's ``requires`` (the descriptor's
    ``deploy.requires``; empty: any device); ``unpacked_bytes`` is measured from the
    archives (:mod:`.unpacked`; 0 if unknown: the agent then assumes three times the
    payload). ``attempt`` is the pair's retry count.
    """
    requires = package.manifest.requires or DeviceRequirements()
    return Announce(
        task_id=task.id,
        kind=package.manifest.kind,
        size_bytes=sum(a.size_bytes for a in package.artifacts),
        unpacked_bytes=package.unpacked_bytes,
        arch=list(requires.arch),
        min_free_disk_bytes=requires.min_free_disk_bytes,
        min_free_memory_bytes=requires.min_free_memory_bytes,
        debug=task.debug,
        expires_at_ms=task.expires_at,
        attempt=attempt,
    )


def _changed_fields(signed: TaskManifest, current: TaskManifest) -> list[str]:
    return [
        field
        for field in signed.__struct_fields__
        if field not in ("artifacts", "sequence")
        and getattr(signed, field) != getattr(current, field)
    ]


class Packages:
    """Finds and checks the signed package of a (task, role). Checked packages are kept for
    ``ttl_ms`` so announcing a task to a thousand targets verifies it once (and reads the
    signature and the signing key once). A revocation in this manager drops them at once
    (:meth:`forget`, called by the link's revocation listener); a key revoked through
    another replica counts here within ``ttl_ms``."""

    def __init__(
        self, storage: Storage, blobs: BlobStore, *, clock: Callable[[], int], ttl_ms: int
    ) -> None:
        self._storage = storage
        self._blobs = blobs
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._cache: dict[tuple[str, Role], tuple[Package, int]] = {}
        self._loading: dict[tuple[str, Role], asyncio.Future[Package | None]] = {}
        self._generation = 0  # moved on by forget(): a load begun before is not kept
        self._verified: dict[tuple[str, int], int] = {}  # -> unpacked size

    async def package(self, task: TaskRecord, role: Role) -> Package | None:
        """The checked package, or ``None`` while it does not exist yet (the deploy manifest
        of a task with a build is signed when the build delivers). Raises
        :class:`DeliveryRefused` (see the module docstring).

        Concurrent calls for one (task, role) -- a new task announced to a thousand targets
        at once -- share one check: the artifacts are hashed once, not once per target."""
        key = (task.id, role)
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[1] < self._ttl_ms:
            return cached[0]
        self._cache.pop(key, None)
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(task, role))
            self._loading[key] = loading
            loading.add_done_callback(functools.partial(self._loaded, key))
        return await asyncio.shield(loading)

    def forget(self, task_id: str | None = None) -> None:
        """Check the packages of ``task_id`` (``None``: of every task) again at their next
        use: a revocation, a stop or a deletion."""
        self._generation += 1
        if task_id is None:
            self._cache.clear()
        else:
            for role in ("deploy", "build"):
                self._cache.pop((task_id, role), None)

    def _loaded(self, key: tuple[str, Role], done: asyncio.Future[Package | None]) -> None:
        self._loading.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have been cancelled

    async def _load(self, task: TaskRecord, role: Role) -> Package | None:
        key = (task.id, role)
        now = self._clock()
        generation = self._generation
        signed = await self._storage.get_task_signature(task.id, role)
        if signed is None:
            await self._unsigned(task, role)
            return None
        package = await self._check(task, signed)
        if generation != self._generation:  # revoked (or stopped) meanwhile: check again
            await self._check_key(task.id, signed)
            return package
        if len(self._cache) >= _CACHE_MAX:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (package, now)
        return package

    async def _unsigned(self, task: TaskRecord, role: Role) -> None:
        """No signed manifest for ``role``: wait for a task being signed right now (its
        row is stored first) or a build still to deliver; refuse else."""
        build = None
        if role == "deploy" and task.build_host is not None:
            build = await self._storage.get_task_signature(task.id, "build")
        if build is not None:
            assert task.build_host is not None
            row = await self._storage.get_task_target(task.id, task.build_host)
            if row is None or row.state != TargetState.BUILT.value:
                return  # the build has not delivered (yet): signed when it does
            key = await self._storage.get_operator_key(build.key_id)
            if key is None or key.revoked_at is not None:
                raise DeliveryRefused(
                    "revoked_signer",
                    f"the deploy manifest of task {task.id} was not signed: the "
                    f"submitter's key {build.key_id} is revoked",
                )
        elif self._clock() - task.created_at < SIGNING_GRACE_MS:
            return  # being created: announced by the creation once it is signed
        raise DeliveryRefused("unsigned", f"task {task.id} has no signed {role} manifest")

    async def _check(self, task: TaskRecord, signed: TaskSignatureRecord) -> Package:
        try:
            check_signed(signed.manifest, signed.signature, signed.certificate)
            manifest = decode_manifest(signed.manifest)
        except (CryptoError, MessageError) as exc:
            log.error("task %s: the stored %s manifest is damaged: %s", task.id, signed.kind, exc)
            raise DeliveryRefused(
                "tampered", f"the stored manifest of task {task.id} does not verify: {exc}"
            ) from None
        await self._check_key(task.id, signed)
        current = msgspec.structs.replace(
            task_manifest(task, manifest.kind, manifest.artifacts), sequence=manifest.sequence
        )
        changed = _changed_fields(manifest, current)
        if changed or manifest.kind != signed.kind:
            log.error("task %s changed after signing: %s", task.id, ", ".join(changed))
            raise DeliveryRefused(
                "changed_after_signing",
                f"task {task.id} changed after it was signed ({', '.join(changed) or 'id'})",
            )
        unpacked = 0
        for info in manifest.artifacts:
            unpacked += await self._check_blob(task.id, info)
        return Package(manifest, signed, unpacked)

    async def _check_key(self, task_id: str, signed: TaskSignatureRecord) -> None:
        key = await self._storage.get_operator_key(signed.key_id)
        if key is None or key.revoked_at is not None:
            raise DeliveryRefused(
                "revoked_signer",
                f"task {task_id} is signed by operator key {signed.key_id}, which is revoked",
            )

    async def _check_blob(self, task_id: str, info: ArtifactInfo) -> int:
        """The blob has the signed size and SHA-256 (hashed once per process); returns its
        unpacked size (0: unknown), measured in the same pass."""
        if (info.sha256, info.size_bytes) in self._verified:
            return self._verified[(info.sha256, info.size_bytes)]
        meter = UnpackedMeter()
        size = await self._blobs.size(info.sha256)
        if size is None:
            raise DeliveryRefused(
                "missing_artifact", f"artifact {info.name} of task {task_id} is missing"
            )
        digest = hashlib.sha256()
        offset = 0
        while offset < size:
            try:
                piece = await self._blobs.read_range(
                    info.sha256, offset, min(_HASH_PIECE, size - offset)
                )
            except BlobDamaged as exc:  # encrypted at rest and failed authentication
                log.error("artifact %s of task %s: %s", info.name, task_id, exc)
                raise DeliveryRefused(
                    "tampered", f"artifact {info.name} of task {task_id} is damaged"
                ) from None
            if not piece:
                break
            digest.update(piece)
            meter.feed(piece)
            offset += len(piece)
        if offset != info.size_bytes or digest.hexdigest() != info.sha256:
            log.error("artifact %s of task %s does not match its signed digest", info.name, task_id)
            raise DeliveryRefused(
                "tampered",
                f"artifact {info.name} of task {task_id} does not match its signed SHA-256",
            )
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        unpacked = meter.result()
        self._verified[(info.sha256, info.size_bytes)] = unpacked
        return unpacked
