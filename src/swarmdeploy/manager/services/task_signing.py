"""Signing tasks with the key of the operator who submitted them (issue 5, ADR 0004).

A task's manifest is built ONCE, deterministically, and signed: the build manifest (build
host) and the deploy manifest of a task without a build at creation; the deploy manifest of
a task with a build when the build has delivered its artifacts (it binds their digests).
The exact bytes, signature and certificate are stored (``task_signatures``) and sent
unchanged. Every manifest carries a fixed chunk size (:data:`SIGNED_CHUNK_BYTES`), so link
settings changed later cannot alter what was signed.

``sequence`` comes from one counter over all signatures: ``last_task_sequence() + 1``,
taken again when the insert conflicts with a concurrent signature. It never goes back
(signatures outlive their task), so agents' "newer than the last accepted" rule holds.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec

from swarmdeploy.crypto.operator import seed_signer
from swarmdeploy.crypto.signing import sign_manifest
from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import Forbidden, Unavailable
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.services.signing import OperatorKeys
from swarmdeploy.protocol.descriptor import DEFAULT_APP, Health
from swarmdeploy.protocol.manifest import (
    ArtifactInfo,
    DeviceRequirements,
    HealthCheck,
    Rlimits,
    SandboxPolicy,
    TaskManifest,
    encode_manifest,
)
from swarmdeploy.protocol.messages import DEFAULT_CHUNK_BYTES
from swarmdeploy.protocol.selector import Selector, parse_selector
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict
from swarmdeploy.storage.records import OperatorKeyRecord, TaskRecord, TaskSignatureRecord

log = logging.getLogger(__name__)

Kind = Literal["build", "deploy"]
#: The chunk size recorded in every signed manifest (and used to serve its chunks).
SIGNED_CHUNK_BYTES = DEFAULT_CHUNK_BYTES
_SEQUENCE_ATTEMPTS = 50


def key_owner(principal: Principal) -> str:
    """Who a principal's operator keys belong to: its API key id, else ``via:name``
    (``admin-key:<name>`` for the bootstrap admin key, ``oidc:<subject>``)."""
    return principal.key_id or f"{principal.via}:{principal.name}"


def archive_name(head: bytes) -> str:
    """The artifact name of a source archive from its first bytes."""
    if head.startswith(b"PK"):
        return "source.zip"
    if head.startswith(b"\x1f\x8b"):
        return "source.tar.gz"
    return "source.tar"


def _section(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    for key in path:
        value = doc.get(key)
        doc = value if isinstance(value, dict) else {}
    return doc


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


#: Descriptor ``sandbox.limits`` field -> manifest ``Rlimits`` field.
LIMIT_FIELDS = {
    "processes": "nproc",
    "memoryBytes": "data_bytes",
    "fileSizeBytes": "fsize_bytes",
    "cpuSeconds": "cpu_s",
    "openFiles": "nofile",
}


def sandbox_of(descriptor: dict[str, Any]) -> SandboxPolicy:
    """The sandbox policy a (validated) descriptor asks for: the strict default (no
    network, no devices, paths or groups, no limits of its own: the device's ceilings)
    plus what ``sandbox`` names -- ``network``, ``devices``, ``paths`` (read-only unless
    ``rw``), ``groups`` (names, resolved on the device) and ``limits``."""
    sandbox = _section(descriptor, "sandbox")
    limits = _section(sandbox, "limits")
    paths = [p for p in sandbox.get("paths") or [] if isinstance(p, dict)]
    return SandboxPolicy(
        network=sandbox.get("network") is True,
        devices=tuple(_strings(sandbox, "devices")),
        ro_paths=tuple(str(p["path"]) for p in paths if p.get("rw") is not True),
        rw_paths=tuple(str(p["path"]) for p in paths if p.get("rw") is True),
        group_names=tuple(_strings(sandbox, "groups")),
        rlimits=Rlimits(
            **{
                ours: int(limits[theirs])
                for theirs, ours in LIMIT_FIELDS.items()
                if theirs in limits
            }
        ),
    )


def sandbox_json(policy: SandboxPolicy) -> dict[str, Any]:
    """The policy as the task document shows it (descriptor names; ``limits`` lists the
    ones the task sets)."""
    paths = [{"path": p, "rw": False} for p in policy.ro_paths]
    paths += [{"path": p, "rw": True} for p in policy.rw_paths]
    limits = {
        theirs: getattr(policy.rlimits, ours)
        for theirs, ours in LIMIT_FIELDS.items()
        if getattr(policy.rlimits, ours)
    }
    return {
        "network": policy.network,
        "devices": list(policy.devices),
        "paths": paths,
        "groups": list(policy.group_names),
        "limits": limits,
    }


def task_manifest(task: TaskRecord, kind: Kind, artifacts: list[ArtifactInfo]) -> TaskManifest:
    """The unsigned manifest (``sequence`` 0) of ``task`` for ``kind``: its commands, the
    selector (deploy: the descriptor's target ids and tags; build: the build host), the
    artifacts, issue time and expiry, and the sandbox policy."""
    doc = task.descriptor
    common: dict[str, Any] = {
        "task_id": task.id,
        "debug": task.debug,
        "created_at_ms": task.created_at,
        "expires_at_ms": task.expires_at,
        "artifacts": artifacts,
        "sandbox": sandbox_of(doc),
    }
    if kind == "build":
        build = _section(doc, "build")
        return TaskManifest(
            kind="build",
            build_commands=_strings(build, "commands"),
            build_artifacts=_strings(build, "artifacts"),
            target_ids=[task.build_host] if task.build_host else [],
            **common,
        )
    run = _section(doc, "deploy", "run")
    sel = _selector_of(_section(doc, "deploy", "target"))
    return TaskManifest(
        kind="deploy",
        install=_strings(_section(doc, "deploy", "install"), "commands"),
        run=_strings(run, "commands"),
        auto_restart=bool(run.get("autoRestart", False)),
        app=_app_of(doc),
        target_ids=list(sel.ids),
        target_tags=list(sel.tags),
        target_all=list(sel.all_tags),
        target_not=list(sel.not_tags),
        target_not_ids=list(sel.not_ids),
        requires=requirements_of(doc),
        health=health_of(doc),
        **common,
    )


def _app_of(doc: dict[str, Any]) -> str:
    """The manifest's ``app``: empty for the default app, so that the manifests of tasks
    without an app keep their bytes."""
    app = doc.get("app")
    return "" if not isinstance(app, str) or app == DEFAULT_APP else app


def _selector_of(target: dict[str, Any]) -> Selector:
    """The signed selector (``docs/selectors.md``) of a stored ``deploy.target``."""
    text = target.get("select")
    extra = parse_selector(text) if isinstance(text, str) else Selector()
    return Selector.of(
        [*_strings(target, "ids"), *extra.ids],
        [*_strings(target, "tags"), *extra.tags],
        [*_strings(target, "all"), *extra.all_tags],
        [*_strings(target, "not"), *extra.not_tags],
        [*_strings(target, "notIds"), *extra.not_ids],
    )


_MB = 1_000_000


def requirements_of(descriptor: dict[str, Any]) -> DeviceRequirements | None:
    """``deploy.requires`` of a stored (validated) descriptor as the manifest signs it
    (``None`` without one)."""
    requires = _section(descriptor, "deploy", "requires")
    if not requires:
        return None
    return DeviceRequirements(
        arch=tuple(_strings(requires, "arch")),
        min_free_disk_bytes=int(requires.get("minFreeDiskMB") or 0) * _MB,
        min_free_memory_bytes=int(requires.get("minFreeMemoryMB") or 0) * _MB,
    )


def health_of(descriptor: dict[str, Any]) -> HealthCheck | None:
    """``deploy.health`` of a stored (validated) descriptor as the manifest signs it
    (``None`` without one; the descriptor's defaults filled in)."""
    health = _section(descriptor, "deploy", "health")
    if not health:
        return None
    checked = msgspec.convert(health, Health)
    return HealthCheck(
        command=checked.command or "",
        http=checked.http or "",
        up_for_s=checked.up_for or 0.0,
        initial_delay_s=checked.initial_delay,
        interval_s=checked.interval,
        attempts=checked.attempts,
        deadline_s=checked.deadline,
    )


class TaskSigner:
    """Signs manifests with operator keys held by :class:`OperatorKeys` and stores them."""

    def __init__(
        self, storage: Storage, *, keys: OperatorKeys, blobs: BlobStore, clock: Clock
    ) -> None:
        self._storage = storage
        self._keys = keys
        self._blobs = blobs
        self._clock = clock

    async def sign_new(
        self, task: TaskRecord, key: OperatorKeyRecord, *, reused: TaskRecord | None
    ) -> list[TaskSignatureRecord]:
        """Sign what a new task can be signed for now: the build manifest of a task with a
        build (its deploy manifest follows the build, :meth:`sign_deploy`), else the deploy
        manifest -- over the task's archive, or the artifacts of ``reused`` (``source.task``)."""
        if task.build_host is not None:
            artifacts = await self.archive_artifacts(task)
            return [await self.sign(task_manifest(task, "build", artifacts), key)]
        if "deploy" not in task.descriptor:
            return []
        source = reused or task
        artifacts = await self.deliverable(source)
        return [await self.sign(task_manifest(task, "deploy", artifacts), key)]

    async def sign_deploy(self, task: TaskRecord) -> TaskSignatureRecord | None:
        """After the build of ``task`` delivered: sign its deploy manifest over the uploaded
        artifacts with the key that signed its build manifest. Returns the stored signature
        (an existing one as it is), or ``None`` for a task without a signed build manifest.
        :class:`Forbidden` if that key was revoked meanwhile."""
        existing = await self._storage.get_task_signature(task.id, "deploy")
        if existing is not None:
            return existing
        build = await self._storage.get_task_signature(task.id, "build")
        if build is None or "deploy" not in task.descriptor:
            return None
        key = await self.key_by_id(build.key_id)
        artifacts = await self.uploaded(task.id)
        try:
            return await self.sign(task_manifest(task, "deploy", artifacts), key)
        except Conflict:  # signed concurrently
            return await self._storage.get_task_signature(task.id, "deploy")

    async def archive_artifacts(self, task: TaskRecord) -> list[ArtifactInfo]:
        """The task's source archive as an artifact (none without an archive).
        :class:`Unavailable` if its blob is missing."""
        digest = task.source_digest
        if digest is None:
            return []
        size = await self._blobs.size(digest)
        if size is None:
            raise Unavailable(f"the archive of task {task.id} is missing from the blob store")
        head = await self._blobs.read_range(digest, 0, 4)
        return [
            ArtifactInfo(
                name=archive_name(head),
                sha256=digest,
                size_bytes=size,
                chunk_bytes=SIGNED_CHUNK_BYTES,
            )
        ]

    async def uploaded(self, task_id: str) -> list[ArtifactInfo]:
        """The verified build artifacts uploaded for ``task_id``, by name."""
        return [
            ArtifactInfo(
                name=u.name,
                sha256=u.sha256,
                size_bytes=u.size_bytes,
                chunk_bytes=SIGNED_CHUNK_BYTES,
            )
            for u in await self._storage.list_uploads(task_id)
            if u.complete
        ]

    async def deliverable(self, task: TaskRecord) -> list[ArtifactInfo]:
        """What deploy targets of ``task`` receive: its build's uploads, else its archive."""
        if task.build_host is None:
            return await self.archive_artifacts(task)
        return await self.uploaded(task.id)

    async def key_of(self, principal: Principal) -> OperatorKeyRecord:
        """The caller's newest unrevoked operator key, generated on first use.

        :class:`Forbidden` when every key of the caller is revoked: a revoked operator
        does not get a fresh key by submitting a task."""
        owner = key_owner(principal)
        keys = await self._keys.list(owner=owner)
        active = [k for k in keys if k.revoked_at is None]
        if active:
            return active[-1]
        if keys:
            raise Forbidden(f"the operator signing key of {principal.audit_name} is revoked")
        return await self._keys.generate(owner=owner, name=principal.name, role=principal.role)

    async def key_by_id(self, key_id: str) -> OperatorKeyRecord:
        """A stored key; :class:`Forbidden` if it is revoked (``NotFoundError`` if gone)."""
        key = await self._keys.get(key_id)
        if key.revoked_at is not None:
            raise Forbidden(f"operator signing key {key_id} is revoked")
        return key

    async def sign(self, manifest: TaskManifest, key: OperatorKeyRecord) -> TaskSignatureRecord:
        """Give ``manifest`` the next sequence number, sign it with ``key`` and store it.

        Raises ``Conflict`` (storage) if the task already has a manifest of this kind,
        :class:`Unavailable` if no free sequence number was found after many attempts."""
        seed = self._keys.seed_of(key)
        await self.key_by_id(key.id)  # refuse a key revoked meanwhile
        for _ in range(_SEQUENCE_ATTEMPTS):
            sequence = await self._storage.last_task_sequence() + 1
            data = encode_manifest(msgspec.structs.replace(manifest, sequence=sequence))
            signature, certificate = sign_manifest(data, seed_signer(seed), key.certificate)
            record = TaskSignatureRecord(
                task_id=manifest.task_id,
                kind=manifest.kind,
                manifest=data,
                signature=signature,
                certificate=certificate,
                sequence=sequence,
                key_id=key.id,
                signed_at=self._clock(),
            )
            try:
                await self._storage.add_task_signature(record)
            except Conflict:
                existing = await self._storage.get_task_signature(manifest.task_id, manifest.kind)
                if existing is not None:
                    raise
                continue  # another signature took this sequence number: take the next
            log.info(
                "task %s: %s manifest signed by key %s (sequence %d)",
                manifest.task_id, manifest.kind, key.id, sequence,
            )  # fmt: skip
            return record
        raise Unavailable("could not allocate a task sequence number; try again")
