"""Tasks signed with the submitting operator's key at creation (issue 5, ADR 0004): one key
per operator made on first use, a growing sequence, the selector and sandbox bound, revoked
operators refused; build tasks sign their deploy manifest after the build delivered."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest

from swarmdeploy.crypto.anchors import parse_anchor_file
from swarmdeploy.crypto.ca import CertificateAuthority, create_ca
from swarmdeploy.crypto.signing import Revocations, Target, check_signed, verify_task
from swarmdeploy.manager.errors import Forbidden
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.blobs import MemoryBlobStore
from swarmdeploy.manager.services.signing import OperatorKeys
from swarmdeploy.manager.services.task_signing import SIGNED_CHUNK_BYTES, TaskSigner, key_owner
from swarmdeploy.manager.services.tasks import TaskService, task_json
from swarmdeploy.protocol.manifest import HealthCheck, decode_manifest
from swarmdeploy.storage.records import UploadRecord
from tests.manager.services.conftest import World

OPERATOR = Principal(name="ops", role="operator", via="api-key", key_id="k-ops")
ADMIN = Principal(name="bootstrap", role="admin", via="admin-key")


@dataclasses.dataclass
class Signing:
    world: World
    ca: CertificateAuthority
    keys: OperatorKeys
    signer: TaskSigner
    tasks: TaskService


@pytest.fixture
async def signing(world: World) -> Signing:
    ca = create_ca("test CA", now=dt.datetime.fromtimestamp(world.clock.now / 1000, dt.UTC))
    keys = OperatorKeys(world.storage, ca=ca, secret=b"s" * 32, clock=world.clock)
    blobs = MemoryBlobStore()
    signer = TaskSigner(world.storage, keys=keys, blobs=blobs, clock=world.clock)
    tasks = TaskService(
        world.storage,
        blobs=blobs,
        events=world.events,
        dispatcher=world.dispatcher,
        logs=world.logs,
        states=world.states,
        clock=world.clock,
        audit=AuditLog(world.storage, clock=world.clock),
        signer=signer,
    )
    await world.add_targets(["a", "b1"], tags=("field",))
    return Signing(world, ca, keys, signer, tasks)


def _deploy(**extra: object) -> dict[str, object]:
    run = {"commands": ["./robot"], "autoRestart": True}
    target = {"ids": ["a"], "tags": ["field"]}
    return {"deploy": {"install": {"commands": ["make install"]}, "run": run, "target": target},
            **extra}  # fmt: skip


async def test_task_is_signed_with_a_key_made_for_its_submitter(signing: Signing) -> None:
    view = await signing.tasks.create(_deploy(), created_by="ops", principal=OPERATOR)
    stored = await signing.world.storage.get_task_signature(view.record.id, "deploy")
    assert stored is not None and stored.sequence == 1
    [key] = await signing.keys.list(owner="k-ops")
    assert stored.key_id == key.id
    verified = verify_task(
        stored.manifest,
        stored.signature,
        stored.certificate,
        anchors=parse_anchor_file(signing.ca.cert_pem().decode()),
        revoked=Revocations(),
        target=Target("a"),
        task_id=view.record.id,
        now_ms=signing.world.clock.now,
        last_sequence=0,
    )
    manifest = decode_manifest(verified.manifest)
    assert (manifest.install, manifest.run, manifest.auto_restart) == (
        ["make install"],
        ["./robot"],
        True,
    )
    assert (manifest.target_ids, manifest.target_tags) == (["a"], ["field"])
    assert manifest.expires_at_ms > manifest.created_at_ms == view.record.created_at
    assert manifest.sandbox.network is False


async def test_sequence_grows_and_one_key_serves_every_task(signing: Signing) -> None:
    sequences = []
    for _ in range(3):
        view = await signing.tasks.create(_deploy(), created_by="ops", principal=OPERATOR)
        stored = await signing.world.storage.get_task_signature(view.record.id, "deploy")
        assert stored is not None
        sequences.append(stored.sequence)
    assert sequences == [1, 2, 3]
    assert len(await signing.keys.list(owner="k-ops")) == 1


async def test_admin_key_owner_and_network_sandbox_from_the_descriptor(signing: Signing) -> None:
    assert key_owner(ADMIN) == "admin-key:bootstrap"
    doc = _deploy()
    doc["sandbox"] = {"network": True}
    record = (await signing.tasks.create(doc, created_by="admin", principal=ADMIN)).record
    stored = await signing.world.storage.get_task_signature(record.id, "deploy")
    assert stored is not None
    assert decode_manifest(stored.manifest).sandbox.network is True
    assert [k.owner for k in await signing.keys.list()] == ["admin-key:bootstrap"]


async def test_devices_paths_groups_and_limits_are_signed_into_the_manifest(
    signing: Signing,
) -> None:
    doc = _deploy()
    doc["sandbox"] = {
        "devices": ["/dev/ttyUSB0"],
        "paths": [{"path": "/srv/maps"}, {"path": "/var/lib/robot", "rw": True}],
        "groups": ["dialout"],
        "limits": {"processes": 32, "memoryBytes": 1 << 28, "cpuSeconds": 60},
    }
    created = await signing.tasks.create(doc, created_by="ops", principal=OPERATOR)
    stored = await signing.world.storage.get_task_signature(created.record.id, "deploy")
    assert stored is not None
    policy = decode_manifest(stored.manifest).sandbox
    assert policy.devices == ("/dev/ttyUSB0",) and policy.group_names == ("dialout",)
    assert (policy.ro_paths, policy.rw_paths) == (("/srv/maps",), ("/var/lib/robot",))
    limits = policy.rlimits
    assert (limits.nproc, limits.data_bytes, limits.cpu_s, limits.fsize_bytes) == (
        32,
        1 << 28,
        60,
        0,
    )
    shown = task_json(created, with_targets=False)["sandbox"]
    assert shown["paths"] == [
        {"path": "/srv/maps", "rw": False},
        {"path": "/var/lib/robot", "rw": True},
    ]
    assert shown["limits"] == {"processes": 32, "memoryBytes": 1 << 28, "cpuSeconds": 60}


async def test_revoked_operator_gets_no_task_and_no_fresh_key(signing: Signing) -> None:
    await signing.tasks.create(_deploy(), created_by="ops", principal=OPERATOR)
    [key] = await signing.keys.list(owner="k-ops")
    await signing.keys.revoke(key.id)
    before = (await signing.world.storage.list_tasks(page=1, per_page=100)).total
    with pytest.raises(Forbidden, match="revoked"):
        await signing.tasks.create(_deploy(), created_by="ops", principal=OPERATOR)
    assert (await signing.world.storage.list_tasks(page=1, per_page=100)).total == before
    assert len(await signing.keys.list(owner="k-ops")) == 1


async def test_archive_is_bound_with_a_fixed_chunk_size(signing: Signing) -> None:
    archive = b"PK\x03\x04" + b"x" * 100
    source = {"zip": base64.b64encode(archive).decode()}
    view = await signing.tasks.create(_deploy(source=source), created_by="o", principal=OPERATOR)
    stored = await signing.world.storage.get_task_signature(view.record.id, "deploy")
    assert stored is not None
    [artifact] = decode_manifest(stored.manifest).artifacts
    assert (artifact.name, artifact.sha256, artifact.size_bytes, artifact.chunk_bytes) == (
        "source.zip",
        view.record.source_digest,
        len(archive),
        SIGNED_CHUNK_BYTES,
    )
    check_signed(stored.manifest, stored.signature, stored.certificate)


async def test_build_task_signs_build_now_and_deploy_after_the_build(signing: Signing) -> None:
    source = {"zip": base64.b64encode(b"PK\x03\x04src").decode()}
    build_section = {"host": "b1", "commands": ["make"], "artifacts": ["hello"]}
    doc = {"build": build_section, "source": source, **_deploy()}
    doc["deploy"]["target"] = {"ids": ["a"]}  # type: ignore[index]
    record = (await signing.tasks.create(doc, created_by="ops", principal=OPERATOR)).record
    storage = signing.world.storage
    build = await storage.get_task_signature(record.id, "build")
    assert build is not None and await storage.get_task_signature(record.id, "deploy") is None
    built = decode_manifest(build.manifest)
    assert (built.build_commands, built.target_ids) == (["make"], ["b1"])
    upload = UploadRecord(
        task_id=record.id, sha256="ab" * 32, name="hello", size_bytes=5,
        chunk_bytes=SIGNED_CHUNK_BYTES, created_at=0, next_index=1, complete=True,
    )  # fmt: skip
    await storage.start_upload(upload)
    deploy = await signing.signer.sign_deploy(record)
    assert deploy is not None and deploy.sequence == build.sequence + 1
    assert deploy.key_id == build.key_id
    [artifact] = decode_manifest(deploy.manifest).artifacts
    assert (artifact.sha256, artifact.size_bytes) == ("ab" * 32, 5)
    assert await signing.signer.sign_deploy(record) == deploy  # once only


async def test_task_document_shows_signer_sequence_and_sandbox(signing: Signing) -> None:
    created = await signing.tasks.create(_deploy(), created_by="ops", principal=OPERATOR)
    [key] = await signing.keys.list(owner="k-ops")
    doc = task_json(await signing.tasks.get(created.record.id), with_targets=True)
    assert doc["signedBy"] == {"keyId": key.id, "name": "ops"}
    assert doc["sequence"] == 1 and doc["sandbox"]["network"] is False
    assert task_json(created, with_targets=False)["signedBy"] == doc["signedBy"]


async def test_deploy_requires_is_signed_into_the_manifest(signing: Signing) -> None:
    doc = _deploy()
    doc["deploy"]["requires"] = {"arch": ["aarch64"], "minFreeDiskMB": 5, "minFreeMemoryMB": 2}
    created = await signing.tasks.create(doc, created_by="ops", principal=OPERATOR)
    stored = await signing.world.storage.get_task_signature(created.record.id, "deploy")
    assert stored is not None
    requires = decode_manifest(stored.manifest).requires
    assert requires is not None
    assert (requires.arch, requires.min_free_disk_bytes, requires.min_free_memory_bytes) == (
        ("aarch64",), 5_000_000, 2_000_000,
    )  # fmt: skip
    plain = await signing.tasks.create(_deploy(), created_by="ops", principal=OPERATOR)
    unsigned = await signing.world.storage.get_task_signature(plain.record.id, "deploy")
    assert unsigned is not None and b"requires" not in unsigned.manifest  # old bytes kept


async def test_deploy_health_is_signed_into_the_manifest(signing: Signing) -> None:
    doc = _deploy()
    doc["deploy"]["health"] = {"http": "http://127.0.0.1:8080/h", "upFor": 2, "attempts": 5}
    created = await signing.tasks.create(doc, created_by="ops", principal=OPERATOR)
    stored = await signing.world.storage.get_task_signature(created.record.id, "deploy")
    assert stored is not None
    health = decode_manifest(stored.manifest).health
    assert health == HealthCheck(http="http://127.0.0.1:8080/h", up_for_s=2.0, attempts=5)
    plain = await signing.tasks.create(_deploy(), created_by="ops", principal=OPERATOR)
    unsigned = await signing.world.storage.get_task_signature(plain.record.id, "deploy")
    assert unsigned is not None and b"health" not in unsigned.manifest  # old bytes kept
