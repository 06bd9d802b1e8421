"""The signed task manifest: what an agent installs, runs or builds (``docs/protocol.md`` §4.2).

The manager sends the manifest as bytes inside a ``task`` message together with a signature
over exactly those bytes, so the agent verifies what it received without re-serialising
anything (CRD-72/75). The bytes are canonical JSON (sorted keys, no whitespace) so that the
same manifest always signs to the same bytes.

Unknown fields are **refused** here, unlike in wire messages: an agent must not silently skip
an instruction that a newer manager added. No I/O happens here.

The fields that verification decides on (``sequence``, ``target_ids``, ``target_tags``,
``created_at_ms``, ``expires_at_ms``, artifact digests and sizes) are read again by
:class:`swarmdeploy.crypto.signing.SignedFacts` from the same bytes; ``sandbox`` is the
:class:`SandboxPolicy` the agent's launcher enforces (ADR 0004). ``sequence`` 0 marks an
unsigned legacy manifest, which only an agent in insecure lab mode accepts; a signed one has
a sequence of at least 1 and an expiry after its creation time.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from swarmdeploy.protocol.descriptor_common import APP_NAME_PATTERN, DEFAULT_APP, GROUP_NAME_PATTERN
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    MAX_CHUNK_BYTES,
    ChunkBytes,
    Commands,
    Count,
    Kind,
    Label,
    Name,
    Sha256,
)

#: Largest manifest; it travels inside one ``task`` message.
MAX_MANIFEST_BYTES = MAX_CHUNK_BYTES
_MAX_ARTIFACTS = 64
#: Most target ids one manifest may name (larger fleets are selected by tag).
MAX_TARGET_IDS = 10_000
MAX_TARGET_TAGS = 256
#: The unprivileged user and group sandboxed commands run as by default ("nobody").
NOBODY = 65534

_Id = Annotated[int, Meta(ge=1, le=2**32 - 2)]
_Limit = Annotated[int, Meta(ge=0, le=2**62)]
_Path = Annotated[str, Meta(min_length=1, max_length=4096)]
_Paths = Annotated[tuple[_Path, ...], Meta(max_length=64)]
_GroupName = Annotated[str, Meta(pattern=GROUP_NAME_PATTERN)]
#: An app name, or empty for the default app.
_APP_OR_DEFAULT = "^(" + APP_NAME_PATTERN.strip("^$") + ")?$"


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class _Frozen(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    pass


class Rlimits(_Frozen, frozen=True):
    """Resource limits per command (0: not set -- the agent's ceiling applies, see
    ``swarmdeploy.agent.limits``). ``nproc`` counts every process of the sandbox uid on the
    machine (``RLIMIT_NPROC`` semantics); ``data_bytes`` is the descriptor's
    ``sandbox.limits.memoryBytes`` (``RLIMIT_DATA``: heap and private mappings);
    ``address_space_bytes`` (``RLIMIT_AS``) only ever narrows further."""

    cpu_s: _Limit = 0
    nofile: _Limit = 0
    address_space_bytes: _Limit = 0
    nproc: _Limit = 0
    fsize_bytes: _Limit = 0
    data_bytes: _Limit = 0

    def prlimit_args(self) -> list[str]:
        """``prlimit`` options (soft = hard) for the limits that are set."""
        pairs = (
            ("--cpu", self.cpu_s),
            ("--nofile", self.nofile),
            ("--as", self.address_space_bytes),
            ("--nproc", self.nproc),
            ("--fsize", self.fsize_bytes),
            ("--data", self.data_bytes),
        )
        return [f"{option}={value}" for option, value in pairs if value]


class SandboxPolicy(_Frozen, frozen=True):
    """What a task's commands may do; part of the signed manifest (``sandbox`` field) so an
    operator's key, not the manager, decides it -- and shown in the API.

    The defaults are the strictest: no network, uid/gid 65534, the agent's limit ceilings,
    no extra paths, devices or groups. Extra paths, devices and groups (``groups`` by gid,
    ``group_names`` by name, resolved on the device) are accepted only where the agent's own
    ``SandboxConfig`` allows them, and limits only up to its ceilings
    (``swarmdeploy.agent.sandbox.policy_refusals``): a manifest cannot open the device more
    widely than its owner provisioned. Fields added later are omitted when empty, so older
    manifests keep their exact bytes and signatures.
    """

    network: bool = False
    uid: _Id = NOBODY
    gid: _Id = NOBODY
    groups: Annotated[tuple[_Id, ...], Meta(max_length=32)] = ()
    rlimits: Rlimits = Rlimits()
    ro_paths: _Paths = ()
    rw_paths: _Paths = ()
    devices: _Paths = ()
    group_names: Annotated[tuple[_GroupName, ...], Meta(max_length=32)] = ()


class ArtifactInfo(_Strict):
    """One artifact of a task: a content-addressed blob fetched in chunks (§6.5)."""

    name: Label
    sha256: Sha256
    size_bytes: Count
    chunk_bytes: ChunkBytes

    @property
    def chunk_count(self) -> int:
        """Number of chunks (0 for an empty artifact)."""
        return -(-self.size_bytes // self.chunk_bytes)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of chunk ``index``; raises :class:`MessageError` (``bad_index``)
        when the index is out of range."""
        if not 0 <= index < self.chunk_count:
            raise MessageError(f"chunk {index} out of range 0..{self.chunk_count - 1}", "bad_index")
        offset = index * self.chunk_bytes
        return offset, min(self.chunk_bytes, self.size_bytes - offset)


class DeviceRequirements(_Frozen, frozen=True):
    """What a device must offer (the descriptor's ``deploy.requires``): any of ``arch``
    (empty: any), at least ``min_free_disk_bytes`` free in the agent's data dir and
    ``min_free_memory_bytes`` available memory (0: no minimum)."""

    arch: Annotated[tuple[Label, ...], Meta(max_length=16)] = ()
    min_free_disk_bytes: Count = 0
    min_free_memory_bytes: Count = 0


_Seconds = Annotated[float, Meta(ge=0, le=24 * 3600)]


class HealthCheck(_Frozen, frozen=True):
    """The descriptor's ``deploy.health`` as signed (docs/protocol.md §4.3): ``command``
    (empty: none) must exit 0, ``http`` (empty: none; 127.0.0.1/localhost) must answer 2xx,
    and the run commands must have stayed up ``up_for_s`` seconds (0: no such check); one
    attempt every ``interval_s`` after ``initial_delay_s``, at most ``attempts`` attempts and
    ``deadline_s`` seconds after the run commands started."""

    command: Annotated[str, Meta(max_length=16_384)] = ""
    http: Annotated[str, Meta(max_length=2048)] = ""
    up_for_s: _Seconds = 0.0
    initial_delay_s: _Seconds = 0.0
    interval_s: Annotated[float, Meta(ge=0.1, le=3600)] = 5.0
    attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    deadline_s: Annotated[float, Meta(ge=1, le=24 * 3600)] = 300.0


class TaskManifest(_Strict):
    """Instructions of a task as signed by the manager on behalf of an operator."""

    task_id: Name
    kind: Kind = "deploy"
    debug: bool = False
    created_at_ms: Count = 0
    expires_at_ms: Count = 0
    artifacts: Annotated[list[ArtifactInfo], Meta(max_length=_MAX_ARTIFACTS)] = []
    install: Commands = []
    run: Commands = []
    auto_restart: bool = False
    build_commands: Commands = []
    build_artifacts: Annotated[
        list[Annotated[str, Meta(max_length=4096)]], Meta(max_length=256)
    ] = []
    #: Monotonic per manager, assigned when signing; 0: unsigned (insecure lab mode only).
    sequence: Count = 0
    #: The selector (``docs/selectors.md``): a target is addressed by its id or by any of
    #: ``target_tags``, if it carries every tag of ``target_all`` and none of
    #: ``target_not``, and its id is not in ``target_not_ids``.
    target_ids: Annotated[list[Name], Meta(max_length=MAX_TARGET_IDS)] = []
    target_tags: Annotated[list[Name], Meta(max_length=MAX_TARGET_TAGS)] = []
    target_all: Annotated[list[Name], Meta(max_length=MAX_TARGET_TAGS)] = []
    target_not: Annotated[list[Name], Meta(max_length=MAX_TARGET_TAGS)] = []
    target_not_ids: Annotated[list[Name], Meta(max_length=MAX_TARGET_IDS)] = []
    sandbox: SandboxPolicy = SandboxPolicy()
    #: ``None`` (omitted) without requirements: agents that predate the field keep
    #: accepting such manifests, which refuse unknown fields.
    requires: DeviceRequirements | None = None
    #: The app this release belongs to; empty: the default app. A device runs one release
    #: per app; a new one replaces only the release of the same app (docs/protocol.md).
    app: Annotated[str, Meta(pattern=_APP_OR_DEFAULT)] = ""
    #: ``deploy.health``; ``None`` (omitted) without checks, so that agents that predate
    #: the field keep accepting manifests without it.
    health: HealthCheck | None = None

    @property
    def app_name(self) -> str:
        """The app (``default`` when the manifest names none)."""
        return self.app or DEFAULT_APP

    @property
    def sequence_key(self) -> str:
        """Where the agent keeps the highest accepted sequence of this manifest's kind and
        app: rollback and replay are refused per app (docs/adr/0010)."""
        return self.kind if not self.app else f"{self.kind}:{self.app}"

    def artifact(self, sha256: str) -> ArtifactInfo:
        """The artifact with digest ``sha256``; :class:`MessageError` (``unknown_artifact``)."""
        for art in self.artifacts:
            if art.sha256 == sha256:
                return art
        raise MessageError(f"task {self.task_id} has no artifact {sha256}", "unknown_artifact")


def encode_manifest(manifest: TaskManifest) -> bytes:
    """Canonical JSON bytes of a validated manifest (what gets signed).

    Raises :class:`MessageError` when a field is invalid or the result exceeds
    :data:`MAX_MANIFEST_BYTES`.
    """
    data = msgspec.json.encode(manifest, order="sorted")
    decode_manifest(data)  # validates the constraints that construction does not check
    return data


def decode_manifest(data: bytes) -> TaskManifest:
    """Parse and validate manifest bytes; raises :class:`MessageError` for anything else."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise MessageError(f"manifest exceeds {MAX_MANIFEST_BYTES} bytes", "too_large")
    try:
        return msgspec.json.decode(data, type=TaskManifest, strict=True)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise MessageError(f"invalid task manifest: {exc}") from None
    except RecursionError:
        raise MessageError("invalid task manifest: nested too deeply") from None
