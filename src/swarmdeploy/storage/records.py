"""Plain records passed in and out of :class:`~swarmdeploy.storage.base.Storage`.

Times are integers in milliseconds since the Unix epoch (as in the original tool's API).
Records are immutable value objects; backends build them from rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

#: Upper bound for ``per_page`` everywhere (the API refuses larger values).
MAX_PER_PAGE = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: ``total`` counts all matches, ``items`` holds at most ``per_page``."""

    total: int
    items: Sequence[T]
    page: int
    per_page: int


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    """A WGS84 position in decimal degrees."""

    lat: float
    lon: float


@dataclasses.dataclass(frozen=True, slots=True)
class TargetRecord:
    """A registered device.

    ``curve_key`` is the agent's CurveZMQ public key (40-character Z85 text) and
    ``identity_key`` its Ed25519 public key (base64). ``health`` is the latest health report
    (free-form JSON object) and ``last_seen_at`` the time of the last message from the agent.
    """

    id: str
    curve_key: str
    identity_key: str
    created_at: int
    updated_at: int
    name: str = ""
    tags: tuple[str, ...] = ()
    location: Location | None = None
    token_set: str | None = None
    last_seen_at: int | None = None
    log_request_at: int = 0
    health: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRecord:
    """A submitted task.

    ``descriptor`` is the validated descriptor as plain JSON data, with an inline
    ``source.zip`` removed (archives are kept apart, referenced by ``source_digest``).
    ``match_ids``/``match_tags`` record how targets matched (ids named directly, tags that
    matched at least one target); the per-target rows hold the full list.
    """

    id: str
    description: str
    debug: bool
    descriptor: dict[str, Any]
    created_at: int
    expires_at: int
    created_by: str = ""
    build_host: str | None = None
    source_digest: str | None = None
    match_ids: tuple[str, ...] = ()
    match_tags: tuple[str, ...] = ()
    stopped_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StateCount:
    """How many rows of one task are in one ``role`` and ``state``, and the smallest target
    id among them (a task's rows are ordered by role, then target id)."""

    role: str
    state: str
    count: int
    first_target: str


@dataclasses.dataclass(frozen=True, slots=True)
class TaskTargetRecord:
    """The state of one target for one task (state names from ``protocol.states``).

    ``role`` is ``"deploy"`` for targets that receive the deployment and ``"build"`` for the
    build host.
    """

    task_id: str
    target_id: str
    state: str
    updated_at: int
    role: Literal["deploy", "build"] = "deploy"
    reason: str = ""
    #: How many times an operator retried the pair (``POST /tasks/{id}/retry``); announced
    #: with the task so an agent tells a retry from a repeated announcement.
    attempt: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line.

    ``seq`` is the agent's per-target sequence number; the pair (``target``, ``seq``) is unique
    so that a log line re-sent after a reconnect is stored once. Manager-generated lines use
    ``seq=None`` (never de-duplicated). ``command`` is the shell command, or ``$agent`` /
    ``$manager`` for system messages. ``id`` is assigned by the backend on insert.
    """

    time: int
    target: str
    task: str
    stage: str
    command: str
    output: str
    error: bool = False
    seq: int | None = None
    id: int | None = None


SortOrder = Literal["asc", "desc"]
LogSortField = Literal["time", "target", "task", "stage", "command", "error"]


@dataclasses.dataclass(frozen=True, slots=True)
class StateWrite:
    """One compare-and-set of a per-target row inside a :class:`WriteBatch` (the arguments
    of ``Storage.set_task_target_state``)."""

    task_id: str
    target_id: str
    state: str
    updated_at: int
    reason: str = ""
    expected: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ContactWrite:
    """One contact update inside a :class:`WriteBatch` (``Storage.touch_target``)."""

    target_id: str
    seen_at: int
    health: dict[str, Any] | None = None
    #: A health sample to keep in the history (``Storage.add_health_sample``) as well.
    sample: HealthSample | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class WriteBatch:
    """Writes of many agents stored in one transaction (group commit, ``commit_batch``):
    per-target state changes, groups of log lines (one group per agent batch) and contact
    updates."""

    states: Sequence[StateWrite] = ()
    logs: Sequence[Sequence[LogRecord]] = ()
    contacts: Sequence[ContactWrite] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class BatchResult:
    """What ``commit_batch`` did: per state write whether its row changed, per log group
    how many lines were stored (lines already stored are skipped)."""

    states: list[bool]
    logs: list[int]


@dataclasses.dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters for :meth:`Storage.query_logs`; all given filters are ANDed.

    ``output`` is a full-text query: every word must occur in the line. ``since``/``until``
    bound ``time`` (inclusive / exclusive). ``terminal_stages`` limits who sees terminal
    output (issue 9): when set, lines of the task ``terminal`` match only if their stage is
    one of them (an empty tuple hides every terminal line); None: no limit.
    """

    target: str | None = None
    task: str | None = None
    stage: str | None = None
    command: str | None = None
    output: str | None = None
    error: bool | None = None
    since: int | None = None
    until: int | None = None
    terminal_stages: tuple[str, ...] | None = None
    sort_by: LogSortField = "time"
    sort_order: SortOrder = "asc"
    page: int = 1
    per_page: int = 100


#: The task name of terminal output (``terminal_stages`` of :class:`LogQuery`).
TERMINAL_TASK = "terminal"

RequestState = Literal["pending", "sent", "acked", "refused", "expired"]

#: States of a request the agent has not answered yet (it is re-sent at every ``hello``).
OPEN_REQUEST_STATES: tuple[RequestState, ...] = ("pending", "sent")
#: States a request ends in; finished requests are kept until purged.
FINISHED_REQUEST_STATES: tuple[RequestState, ...] = ("acked", "refused", "expired")


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """A manager -> agent request (docs/protocol.md §6.8) kept until the agent answers it.

    ``id`` is the wire ``request_id``, unique per target; ``kind`` the wire message type
    (``stop``, ``log_request``, ``terminal``, ``terminal_stop``, ``config``) and ``payload``
    the message's other fields as JSON. ``state`` goes ``pending`` (stored) -> ``sent``
    (handed to a connection at least once) -> ``acked`` | ``refused`` (the agent's answer) or
    ``expired`` (``expires_at`` passed while the target was away). ``acked_at`` is the time
    the request reached its final state, ``message`` the agent's (or the expiry's) text.
    """

    id: str
    target_id: str
    kind: str
    payload: dict[str, Any]
    created_at: int
    expires_at: int | None = None
    state: RequestState = "pending"
    acked_at: int | None = None
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class UploadRecord:
    """Progress of one build artifact pushed by a build host (docs/protocol.md §6.6).

    The manager holds chunks ``0 .. next_index-1`` of the artifact ``sha256`` of ``task_id``
    (the bytes themselves are a partial file on the manager, or a blob once ``complete``:
    every chunk stored and the digest verified).
    """

    task_id: str
    sha256: str
    name: str
    size_bytes: int
    chunk_bytes: int
    created_at: int
    next_index: int = 0
    complete: bool = False

    @property
    def chunk_count(self) -> int:
        """Number of chunks of the artifact (0 for an empty one)."""
        return -(-self.size_bytes // self.chunk_bytes)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenSetRecord:
    """A named set of registration tokens; ``available`` counts unspent, unexpired tokens."""

    name: str
    total: int
    available: int
    created_at: int
    expires_at: int


Role = Literal["admin", "operator", "viewer"]


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An operator API key; only a keyed hash of the secret is stored."""

    id: str
    name: str
    role: Role
    key_hash: bytes
    created_at: int
    last_used_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """A verified build artifact with its provenance (seed 003 "Package Builder").

    The bytes are a blob keyed by ``sha256`` (content-addressed: two builds that produce the
    same bytes share the blob but keep one record each). ``build_host``, ``commands`` and
    ``built_at`` say where, how and when ``task_id`` produced it.
    """

    task_id: str
    sha256: str
    name: str
    size_bytes: int
    build_host: str
    built_at: int
    commands: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class BuildRecord:
    """When the build of ``task_id`` on ``host`` started and finished (``None``: not yet,
    or the report was never seen -- an agent may jump from ``accepted`` to ``built``)."""

    task_id: str
    host: str
    started_at: int | None = None
    finished_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorKeyRecord:
    """An operator signing key (issue 5, ADR 0004) certified by the manager's CA.

    ``id`` is the key id (:func:`swarmdeploy.crypto.operator.key_id`), ``owner`` the id of
    the API key (or OIDC subject) it signs for, ``certificate`` the CA-signed certificate
    bytes with serial ``serial``, ``sealed_seed`` the Ed25519 seed encrypted with a key from
    the manager's secret store; ``revoked_at`` is set once, when the key is revoked.
    """

    id: str
    name: str
    owner: str
    role: Role
    public_key: bytes
    certificate: bytes
    sealed_seed: bytes = dataclasses.field(repr=False)
    serial: int
    created_at: int
    revoked_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskSignatureRecord:
    """A signed task manifest (issue 5, ADR 0004): the exact canonical manifest bytes, the
    operator's Ed25519 signature over them and the operator certificate, stored once and sent
    unchanged. ``kind`` is ``build`` or ``deploy`` (a build task has both); ``sequence`` is
    unique across all tasks and grows with every signature; ``key_id`` names the signing
    :class:`OperatorKeyRecord`; ``signed_at`` in epoch ms.
    """

    task_id: str
    kind: str
    manifest: bytes = dataclasses.field(repr=False)
    signature: bytes = dataclasses.field(repr=False)
    certificate: bytes = dataclasses.field(repr=False)
    sequence: int
    key_id: str
    signed_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class HealthSample:
    """One stored point of a target's health history (from an agent ``health`` report)."""

    target_id: str
    at_ms: int
    cpu_percent: float = 0.0
    load_1m: float = 0.0
    mem_total_bytes: int = 0
    mem_available_bytes: int = 0
    disk_total_bytes: int = 0
    disk_free_bytes: int = 0
    agent_rss_bytes: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class FloorPlanRecord:
    """An indoor map: an image (PNG or JPEG) devices are placed on, in its pixels."""

    id: str
    name: str
    media_type: str
    width: int
    height: int
    created_at: int
    image: bytes = b""  # empty when listed


@dataclasses.dataclass(frozen=True, slots=True)
class IndoorPosition:
    """Where a target is on a floor plan (image pixels from the top left corner)."""

    target_id: str
    plan_id: str
    x: float
    y: float


@dataclasses.dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the audit log (issue 9, item 10): append-only, never deleted with a
    task, hash-chained (``protocol.audit``). ``seq`` numbers entries from 1 without gaps;
    ``actor`` names who acted (``key alice (3f9a0c1d2e4b)``, ``manager``), ``action`` what
    (``task.stop``, ``terminal.command``), ``target`` on what (a target or task id, or
    empty); ``details`` is JSON-able; ``at`` in epoch ms."""

    seq: int
    at: int
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclasses.dataclass(frozen=True, slots=True)
class TaskAppRecord:
    """The app a deploy task delivers a release of, and whether it is *standing*.

    ``selector`` is the task's target selector in its text form (``docs/selectors.md``);
    ``standing``: devices that come to match later get the release too; ``remove``: a
    standing release is stopped on devices that stop matching. The row goes with its task.
    """

    task_id: str
    app: str
    created_at: int
    version: str = ""
    selector: str = ""
    standing: bool = False
    remove: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RolloutRecord:
    """The staged rollout of a deploy task (docs/rollouts.md): the members of each group,
    fixed when the task was created, and where the rollout stands.

    ``state`` is ``running``, ``paused``, ``halted``, ``aborted`` or ``completed``;
    ``current`` the index of the group being announced; ``soak_until`` (ms) the end of the
    current group's soak once its success threshold held. The row goes with its task."""

    task_id: str
    groups: tuple[tuple[str, ...], ...]
    state: str
    current: int
    updated_at: int
    reason: str = ""
    soak_until: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RollbackRecord:
    """A rollback task and the task it rolls back (``POST /tasks/{id}/rollback``,
    docs/rollouts.md): ``task_id`` deploys the previous release of the app to the devices
    that got ``rollback_of``. The row goes with the rollback task; ``rollback_of`` may name
    a task deleted since."""

    task_id: str
    rollback_of: str
    created_at: int
