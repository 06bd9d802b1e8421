"""Request and response schemas of the REST API (JSON field names in camelCase).

Naming follows ``XCreate`` (request) / ``XPublic`` (response) / ``ListOf[X]`` (page).
Request models forbid unknown fields, so a typo is a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from swarmdeploy.manager.settings import Role
from swarmdeploy.protocol.text import first_unsafe

T = TypeVar("T")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
#: A target id, tag or token-set name: letters, digits and ``._:@-``, at most 128 characters.
Name = Annotated[str, Field(pattern=NAME_PATTERN, examples=["raspi-07"])]
Millis = Annotated[int, Field(description="Milliseconds since the Unix epoch.")]


def _printable(value: str) -> str:
    found = first_unsafe(value)
    if found is not None:
        raise ValueError(f"control and bidi characters are not allowed (found {found})")
    return value


#: A display name: free text without control or bidi characters (``protocol.text``), at
#: most 200 characters. Devices set it at registration; operators see it in terminals.
DisplayName = Annotated[str, Field(max_length=200), AfterValidator(_printable)]


class ApiModel(BaseModel):
    """Base: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ErrorBody(ApiModel):
    """Every error answer. ``code`` is stable; ``path`` locates the field for validation
    errors (``$.deploy.target`` in bodies, ``query.perPage`` in parameters)."""

    error: str = Field(description="Human-readable message.")
    code: str = Field(description="Stable machine-readable code.", examples=["not_found"])
    path: str | None = Field(None, description="Offending field (validation errors only).")


class MessagePublic(ApiModel):
    """A short confirmation."""

    message: str


class ListOf(ApiModel, Generic[T]):
    """One page of a list: ``total`` counts every match, ``items`` at most ``perPage``."""

    total: int
    items: list[T]
    page: int
    per_page: int


class LocationModel(ApiModel):
    """A WGS84 position in decimal degrees."""

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


class ReportedLocation(ApiModel):
    """A position the device measured itself (``swarmdeploy agent --location gpsd``):
    ``altM`` metres above the ellipsoid and ``errorM`` the estimated horizontal error when
    the source gives them, ``at`` when it was measured (ms), ``source`` e.g. ``gpsd``."""

    lat: float
    lon: float
    alt_m: float | None = None
    error_m: float | None = None
    at: Millis
    source: str


# -- targets -----------------------------------------------------------------------------------
class TargetSecurity(ApiModel):
    """What the target's agent trusts, from its latest health report: ``mode`` is
    ``verified`` (trust anchors), ``insecure_lab``, ``no_anchor`` (refuses every task) or
    ``unknown`` (no report yet); ``trustsThisManager`` whether its anchors include this
    manager's deployment CA (``null`` when unknown); ``revocationList`` the number of the
    operator-key revocation list it holds (0: none); ``terminal`` the device's terminal
    policy (``off``, ``sandboxed``, ``root``) and ``onRevoked`` what it does with a running
    deployment whose signer is revoked (``keep``, ``stop``); ``unknown`` for older agents."""

    mode: str
    trusts_this_manager: bool | None
    revocation_list: int
    terminal: str = "unknown"
    on_revoked: str = "unknown"


class RecentTaskOut(ApiModel):
    """A target's row of one of its newest tasks."""

    task: str
    role: Literal["deploy", "build"]
    state: str
    reason: str
    updated_at: Millis


class TargetTaskOut(RecentTaskOut):
    """A row of a target's task history: its state for the task and what the task is."""

    description: str
    created_at: Millis | None
    created_by: str


class TargetConfinement(ApiModel):
    """What the target's agent enforces on deployed commands, from its latest health report:
    ``sandbox`` (``bwrap``, ``unprivileged_user``, ``none`` or ``unknown``), ``seccomp``
    (a filter that also blocks new user namespaces), ``limitMechanism`` (``rlimit``) and
    the limit ceilings of ``sandbox.limits`` by field name (0: none) -- set by the device's
    owner, never by the manager."""

    sandbox: str
    seccomp: bool | None
    limit_mechanism: str | None
    limits: dict[str, int]


class HealthPointOut(ApiModel):
    """One sample of a target's health history (from an agent ``health`` report)."""

    at: Millis
    cpu_percent: float
    load_1m: float = Field(alias="load1m")
    mem_total_bytes: int
    mem_available_bytes: int
    disk_total_bytes: int
    disk_free_bytes: int
    agent_rss_bytes: int


class HealthHistoryOut(ApiModel):
    """A target's health history, oldest first."""

    target: str
    sample_interval_s: float
    items: list[HealthPointOut]


class IndoorModel(ApiModel):
    """Where a device is on a floor plan: the plan's id and image pixels from its top left."""

    plan: str = Field(pattern=r"^[0-9a-f]{16}$")
    x: float = Field(ge=0, allow_inf_nan=False)
    y: float = Field(ge=0, allow_inf_nan=False)


class FloorPlanPublic(ApiModel):
    """An indoor map: an image (``GET /floorplans/{id}/image``) and its size in pixels."""

    id: str
    name: str
    media_type: str
    width: int
    height: int
    created_at: Millis


class TargetPublic(ApiModel):
    """A registered device. ``publicKey`` is its CurveZMQ key (Z85), ``identityKey`` its
    Ed25519 key (base64); ``online`` means heard from within the online timeout;
    ``insecureLab`` that its agent runs in insecure lab mode (accepts unsigned tasks);
    ``security`` what it trusts (:class:`TargetSecurity`); ``signerRevoked`` the running
    deployments (task ids) its agent found signed by a revoked operator key.
    ``location`` is where the map shows it: the location set by an operator (or at
    registration) wins; without one, the position the device reports (``reportedLocation``);
    ``locationSource`` says which (``manual``, ``device`` or null)."""

    id: str
    name: str
    tags: list[str]
    location: LocationModel | None
    location_source: Literal["manual", "device"] | None = None
    reported_location: ReportedLocation | None = None
    public_key: str
    identity_key: str
    token_set: str | None
    created_at: Millis
    updated_at: Millis
    last_seen_at: Millis | None
    log_request_at: Millis
    online: bool
    health: dict[str, Any] | None
    insecure_lab: bool = False
    security: TargetSecurity | None = None
    #: In ``GET /targets`` and ``GET /targets/{id}``: its 5 newest tasks, newest first.
    recent_tasks: list[RecentTaskOut] | None = None
    #: In ``GET /targets`` and ``GET /targets/{id}``: its place on a floor plan, if any.
    indoor: IndoorModel | None = None
    confinement: TargetConfinement | None = None
    signer_revoked: list[str] = []
    os: str | None = Field(None, description="Its OS, e.g. Debian GNU/Linux 12 (bookworm).")
    arch: str | None = Field(None, description="Its architecture, e.g. x86_64 or aarch64.")
    agent_version: str | None = Field(None, description="The version of its agent.")
    transport: str | None = Field(
        None,
        description="The agent link it reported: zmq (CurveZMQ) or http (polling); null before"
        " its first health report.",
    )


class TargetUpdate(ApiModel):
    """Partial update: only the given fields change; ``location: null`` clears it, and so
    does ``indoor: null`` (the place on a floor plan). Keys cannot be changed here (a device
    re-registers for that)."""

    name: DisplayName = ""
    tags: list[Name] = Field(default_factory=list, max_length=100)
    location: LocationModel | None = None
    indoor: IndoorModel | None = None


class CommandCreate(ApiModel):
    """A terminal command for one target (run by ``/bin/sh -c`` in its terminal directory)."""

    command: str = Field(min_length=1, max_length=16_384, pattern=r"^[^\x00]*$")


# -- tasks -------------------------------------------------------------------------------------
class CommandsOut(ApiModel):
    """Commands of a stage."""

    commands: list[str] | None = None


class RunOut(CommandsOut):
    """Run stage."""

    auto_restart: bool = False


class SelectorOut(ApiModel):
    """Target selector of a task (``docs/selectors.md``)."""

    ids: list[str] | None = None
    tags: list[str] | None = None
    all: list[str] | None = None
    not_: list[str] | None = Field(default=None, alias="not")
    not_ids: list[str] | None = None
    select: str | None = None
    follow: bool = False
    remove: bool = False


class RequiresOut(ApiModel):
    """What a device must offer to accept the task (``deploy.requires``)."""

    arch: list[str] | None = None
    min_free_disk_mb: int | None = Field(None, alias="minFreeDiskMB")
    min_free_memory_mb: int | None = Field(None, alias="minFreeMemoryMB")


class HealthOut(ApiModel):
    """Health checks that gate the release (``deploy.health``; seconds)."""

    command: str | None = None
    http: str | None = None
    up_for: float | None = Field(None, alias="upFor")
    initial_delay: float | None = Field(None, alias="initialDelay")
    interval: float | None = None
    attempts: int | None = None
    deadline: float | None = None


class DeployOut(ApiModel):
    """Deploy section of a task."""

    install: CommandsOut | None = None
    run: RunOut | None = None
    target: SelectorOut | None = None
    requires: RequiresOut | None = None
    health: HealthOut | None = None


class BuildArtifactOut(ApiModel):
    """An artifact the build delivered (download: ``GET /artifacts/{sha256}/download``)."""

    name: str
    sha256: str
    size: int


class BuildOut(ApiModel):
    """The build stage of a task: the descriptor's host, commands and artifact paths, then
    the build host's state and reason, start and finish (``null`` until known), duration,
    and the artifacts it delivered."""

    host: str | None = None
    commands: list[str] | None = None
    artifact_paths: list[str] | None = None
    state: str | None = None
    reason: str = ""
    started_at: Millis | None = None
    finished_at: Millis | None = None
    duration_ms: int | None = None
    artifacts: list[BuildArtifactOut] = Field(default_factory=list)


class SourceOut(ApiModel):
    """Where the files come from: a stored archive (``sha256``, ``size``) or an earlier
    task's build artifacts (``task``). Inline archives are never echoed back."""

    task: str | None = None
    sha256: str | None = None
    size: int | None = None


class SignedByOut(ApiModel):
    """The operator key that signed the task's manifest (see ``/operator_keys``)."""

    key_id: str
    name: str


class SandboxPathOut(ApiModel):
    """A host path the task's commands see (read-only unless ``rw``)."""

    path: str
    rw: bool


class SandboxOut(ApiModel):
    """The sandbox policy bound in the task's signed manifest: network, devices, host paths,
    groups (by name) and the resource limits it asks for (unset: the device's ceilings);
    each device grants it only within its own ``--allow-*`` options and ceilings."""

    network: bool
    devices: list[str] = []
    paths: list[SandboxPathOut] = []
    groups: list[str] = []
    limits: dict[str, int] = {}


class MatchOut(ApiModel):
    """How targets matched: ids named directly, tags that matched, number of deploy targets."""

    ids: list[str]
    tags: list[str]
    total: int


TaskStatusName = Literal["pending", "in_progress", "running", "succeeded", "failed", "stopped"]


class TaskTargetPublic(ApiModel):
    """One target's state for a task (names from ``docs/protocol.md``)."""

    id: str
    role: Literal["deploy", "build"]
    state: str
    reason: str
    updated_at: Millis
    attempt: int = Field(0, description="How often an operator retried this target.")


class RolloutGroupOut(ApiModel):
    """One group of a staged rollout: its members counted by outcome and by state."""

    name: str
    size: int
    succeeded: int = Field(description="Members running, exited or healthy.")
    failed: int = Field(description="Members failed, declined, expired or rolled back.")
    not_announced: int = Field(description="Members still pending.")
    success_threshold: float | None
    error_threshold: float | None
    soak: int | None = Field(description="Seconds the success threshold must hold.")
    state_counts: dict[str, int]


class RolloutOut(ApiModel):
    """A task's staged rollout (docs/rollouts.md): ``running``, ``paused``, ``halted``
    (error threshold crossed; ``reason`` says why), ``aborted`` or ``completed``; the index
    of the group being announced and its soak end."""

    state: Literal["running", "paused", "halted", "aborted", "completed"]
    current_group: int
    reason: str
    soak_until: Millis | None
    updated_at: Millis
    groups: list[RolloutGroupOut]


class TaskSummary(ApiModel):
    """A task as listed."""

    id: str = Field(examples=["swift-otter-3f9a"])
    description: str
    debug: bool
    source: SourceOut | None
    build: BuildOut | None
    deploy: DeployOut | None
    #: The app the task delivers a release of (``default`` when it names none).
    app: str | None = None
    version: str | None = None
    created_at: Millis
    expires_at: Millis
    created_by: str
    stopped_at: Millis | None
    match: MatchOut
    status: TaskStatusName
    state_counts: dict[str, int]
    signed_by: SignedByOut | None = None
    sequence: int | None = None
    sandbox: SandboxOut | None = None
    rollout: RolloutOut | None = None


class TaskPreview(ApiModel):
    """What a descriptor would do: the targets it matches now (sorted ids) and its build
    host."""

    total: int
    targets: list[str]
    build_host: str | None


class FailureGroupOut(ApiModel):
    """Targets that failed in the same ``state`` for the same ``reason``: how many, and the
    first 20 ids."""

    state: str
    reason: str
    count: int
    targets: list[str]


class TaskPublic(TaskSummary):
    """A task with the state of every target, and its failures grouped by identical
    reason (largest group first)."""

    targets: list[TaskTargetPublic]
    failures: list[FailureGroupOut] = Field(default_factory=list)
    #: The task this one rolls back (``POST /tasks/{id}/rollback`` created it), if any.
    rollback_of: str | None = None
    #: The tasks that roll this one back, oldest first.
    rolled_back_by: list[str] = Field(default_factory=list)


# -- artifacts ---------------------------------------------------------------------------------
class ArtifactPublic(ApiModel):
    """A build artifact (a tar.gz the build host packed) with its provenance: the task whose
    build produced it, the build host, when, and the build commands."""

    sha256: str = Field(
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    )
    name: str
    size: int
    task: str
    build_host: str
    built_at: Millis
    commands: list[str]


class ArtifactDetail(ArtifactPublic):
    """An artifact by digest: the record of the first build that produced these bytes, and
    every task whose build produced them (identical bytes are stored once)."""

    tasks: list[str]


class RetryCreate(ApiModel):
    """Which targets to retry; without ``targets`` every target in a final failure state."""

    targets: list[str] | None = Field(
        None, max_length=100_000, description="Target ids; omitted: every failed target."
    )


class RollbackCreate(ApiModel):
    """The body of ``POST /tasks/{id}/rollback``: empty (``{}``); the previous release and
    the devices follow from the task."""


class StopPublic(ApiModel):
    """Result of a task stop: rows stopped at once, targets asked, targets whose request
    queue was full (retry for those)."""

    message: str
    stopped: int
    requested: int
    refused: list[str]


# -- logs --------------------------------------------------------------------------------------
class LogPublic(ApiModel):
    """One log line. ``command`` is the shell command or ``$agent``/``$manager``."""

    time: Millis
    target: str
    task: str
    stage: str
    command: str
    output: str
    error: bool


# -- audit log ---------------------------------------------------------------------------------
class AuditEntryPublic(ApiModel):
    """One audit entry: ``seq`` from 1 without gaps; ``prevHash`` is the ``hash`` of the
    entry before (64 zeros for the first); ``hash`` is SHA-256 over the canonical encoding
    of the other fields (``swarmdeploy.protocol.audit``)."""

    seq: int
    at: Millis
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


# -- token sets and API keys -------------------------------------------------------------------
class TokenSetCreate(ApiModel):
    """A new token set (the same fields are accepted as query parameters)."""

    name: Name
    total: int = Field(ge=1, le=10_000)
    expires_in: int | None = Field(
        None, ge=60, le=365 * 24 * 3600, description="Lifetime in seconds (default 7 days)."
    )


class TokenSetPublic(ApiModel):
    """A token set; ``available`` counts unspent, unexpired tokens."""

    name: str
    total: int
    available: int
    created_at: Millis
    expires_at: Millis


class TokenSetCreated(TokenSetPublic):
    """A new set with its plaintext tokens -- shown only in this answer."""

    tokens: list[str] = Field(examples=[["6fa0-3261-ece9"]])


class ApiKeyCreate(ApiModel):
    """A new operator API key."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]*$")
    role: Role


class ApiKeyPublic(ApiModel):
    """An API key without its secret."""

    id: str
    name: str
    role: Role
    created_at: Millis
    last_used_at: Millis | None


class ApiKeyCreated(ApiKeyPublic):
    """A new key with its secret -- shown only in this answer. Use it as
    ``Authorization: Bearer <key>``."""

    key: str


# -- registration and server info --------------------------------------------------------------
class RegistrationCreate(ApiModel):
    """What a device submits to register (with ``X-Auth-Token``)."""

    id: Name
    name: DisplayName = ""
    tags: list[Name] = Field(default_factory=list, max_length=100)
    location: LocationModel | None = None
    public_key: str = Field(description="The agent's CurveZMQ public key, 40 chars of Z85.")
    identity_key: str = Field(description="The agent's Ed25519 public key, base64.")


class ZmqInfo(ApiModel):
    """The manager's CurveZMQ public key (Z85) and its two agent-facing ports."""

    public_key: str
    pub_port: int
    sub_port: int


class ServerInfo(ApiModel):
    """What an agent needs to connect. Check ``caCertificate`` against the trust anchor
    provisioned at install time before trusting ``zeromq.publicKey``."""

    zeromq: ZmqInfo
    ca_certificate: str
    ca_public_key: str
    version: str


class WhoAmI(ApiModel):
    """The caller: how audit lines name it, its role and how it authenticated."""

    name: str
    role: Literal["viewer", "operator", "admin"]
    via: Literal["admin-key", "api-key", "oidc"]
    audit_name: str


class RegistrationPublic(ServerInfo):
    """A successful registration: the device certificate over its identity key (PEM) and a
    raw Ed25519 signature over the same key (base64), both by the manager's CA."""

    id: str
    certificate: str
    signature: str


class HealthPublic(ApiModel):
    """Liveness and storage reachability."""

    status: Literal["ok", "unavailable"]
    storage: Literal["ok", "unavailable"]
    version: str


# -- operator signing keys ---------------------------------------------------------------------
class OperatorKeyCreate(ApiModel):
    """Generate a key (no ``privateKey``) or import one (armored, encrypted with
    ``passphrase``); ``name`` defaults to the owner's name. ``owner`` is the id of the API
    key the signing key is issued to (default: the calling admin itself)."""

    name: str = Field("", max_length=128, pattern=r"^[^\x00-\x1f]*$")
    owner: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    private_key: str | None = Field(None, max_length=8192)
    passphrase: str = Field("", max_length=1024)


class OperatorKeyPublic(ApiModel):
    """An operator signing key: its public key (base64), CA-signed certificate (compact
    JSON, ADR 0004) and serial; ``revokedAt`` once revoked."""

    id: str
    name: str
    owner: str
    role: Role
    public_key: str
    certificate: str
    serial: int
    created_at: Millis
    revoked_at: Millis | None


class OperatorKeyExport(OperatorKeyPublic):
    """An export: with ``private=true`` also ``privateKey``, encrypted with the passphrase."""

    private_key: str | None = None
