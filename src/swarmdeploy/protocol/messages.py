"""Every message exchanged between agent and manager (``docs/protocol.md`` §4).

Messages are msgspec Structs forming a union tagged by ``type``; every message also carries
the protocol version ``v``. :func:`encode` and :func:`decode` turn them into MessagePack bytes
and back, keep unknown fields in ``extra`` (§2), return :class:`UnknownMessage` for types
this version does not know, and raise :class:`~swarmdeploy.protocol.errors.MessageError`
(never anything else) for bytes that are not a valid message. No I/O happens here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import Meta

from swarmdeploy.protocol.codec import Extensible, from_wire, pack, to_wire, unpack
from swarmdeploy.protocol.compression import ENVELOPE, compress, expand
from swarmdeploy.protocol.descriptor_common import MAX_COMMAND_CHARS, MAX_COMMANDS
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.states import TargetState

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: frozenset[int] = frozenset({1})
MAX_CHUNK_BYTES = 1024 * 1024
DEFAULT_CHUNK_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = MAX_CHUNK_BYTES + 64 * 1024
MAX_LOG_ENTRIES = 1000
MAX_OUTPUT_CHARS = 16_384
_MAX_INT = 2**63 - 1

# \Z, not $: "$" also matches before a trailing newline, and ids end up in logs and paths.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z"
Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
OptName = Annotated[str, Meta(pattern=r"^(|[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})\Z")]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
Count = Annotated[int, Meta(ge=0, le=_MAX_INT)]
Seq = Annotated[int, Meta(ge=1, le=_MAX_INT)]
Index = Annotated[int, Meta(ge=0, le=2**31)]
Seconds = Annotated[float, Meta(ge=0, le=1e12)]
Percent = Annotated[float, Meta(ge=0, le=1e6)]
Label = Annotated[str, Meta(max_length=64)]
Text = Annotated[str, Meta(max_length=4096)]
Output = Annotated[str, Meta(max_length=MAX_OUTPUT_CHARS)]
Command = Annotated[str, Meta(max_length=MAX_COMMAND_CHARS)]
Commands = Annotated[list[Command], Meta(max_length=MAX_COMMANDS)]
ChunkData = Annotated[bytes, Meta(max_length=MAX_CHUNK_BYTES)]
ChunkBytes = Annotated[int, Meta(ge=1, le=MAX_CHUNK_BYTES)]
Kind = Literal["deploy", "build"]
_NAME_RE = re.compile(NAME_PATTERN)


def valid_name(value: str) -> bool:
    """Whether ``value`` is a valid target id, tag, task id or request id on the wire."""
    return _NAME_RE.match(value) is not None


class MessageBase(Extensible, tag_field="type", kw_only=True):
    """Base of every message: ``v`` is the protocol version, ``type`` the struct's tag."""

    v: int = PROTOCOL_VERSION


# --- nested records ---------------------------------------------------------------------


class TaskReport(Extensible, kw_only=True):
    """Where this target stands with one task (the fields of a ``state`` report)."""

    task_id: Name
    state: TargetState
    reason: Text = ""
    at_ms: Count = 0


class NetInterface(Extensible, kw_only=True):
    """One network interface in a ``health`` report."""

    name: Label
    addresses: Annotated[list[Label], Meta(max_length=64)] = []
    up: bool = True
    bytes_sent: Count = 0
    bytes_recv: Count = 0


class LogEntry(Extensible, kw_only=True):
    """One log line; ``seq`` numbers the agent's lines (§6.7). ``task`` is empty for agent
    messages and ``terminal`` for terminal output; ``command`` is the shell command or
    ``$agent``."""

    seq: Seq
    time_ms: Count
    task: OptName = ""
    stage: Label = ""
    command: Command = ""
    output: Output = ""
    error: bool = False


class Location(Extensible, kw_only=True):
    """A WGS84 position in decimal degrees."""

    lat: Annotated[float, Meta(ge=-90, le=90)]
    lon: Annotated[float, Meta(ge=-180, le=180)]


class Position(Extensible, kw_only=True):
    """A position fix the device measured itself (e.g. from gpsd): where and when, with the
    source's estimate of its horizontal error when it gives one."""

    lat: Annotated[float, Meta(ge=-90, le=90)]
    lon: Annotated[float, Meta(ge=-180, le=180)]
    alt_m: Annotated[float, Meta(ge=-1e5, le=1e6)] | None = None
    error_m: Annotated[float, Meta(ge=0, le=1e7)] | None = None
    at_ms: Count = 0
    source: Label = "gpsd"


# --- agent -> manager (§4.1) ------------------------------------------------------------


class Hello(MessageBase, tag="hello", kw_only=True):
    """First message on every connection; the manager answers ``welcome`` and reconciles."""

    agent_version: Label = ""
    boot_id: Label = ""
    arch: Label = ""
    tasks: Annotated[list[TaskReport], Meta(max_length=1000)] = []
    log_acked_seq: Count = 0
    config_revision: Count = 0
    #: Compression algorithms the agent accepts and would use (§2.1); empty: none.
    compression: Annotated[list[Label], Meta(max_length=8)] = []


class Heartbeat(MessageBase, tag="heartbeat", kw_only=True):
    """Liveness: keeps the target online (§6.1)."""

    sent_at_ms: Count = 0


class Health(MessageBase, tag="health", kw_only=True):
    """A health-loop report (seed 000); the latest one wins."""

    at_ms: Count = 0
    uptime_s: Seconds = 0.0
    load_1m: Percent = 0.0
    cpu_percent: Percent = 0.0
    mem_total_bytes: Count = 0
    mem_available_bytes: Count = 0
    disk_total_bytes: Count = 0
    disk_free_bytes: Count = 0
    agent_rss_bytes: Count = 0
    disk_low: bool = False
    manager_reachable: bool = True
    interfaces: Annotated[list[NetInterface], Meta(max_length=256)] = []
    position: Position | None = None
    #: The device: its operating system (``PRETTY_NAME`` of ``/etc/os-release``), its
    #: architecture (normalised ``platform.machine()``) and the agent's version.
    os: Label = ""
    arch: Label = ""
    agent_version: Label = ""


class StateReport(MessageBase, tag="state", kw_only=True):
    """A stage transition of this target for one task; re-sent until ``state_ack`` (§6.4)."""

    task_id: Name
    state: TargetState
    reason: Text = ""
    at_ms: Count = 0


class LogBatch(MessageBase, tag="log", kw_only=True):
    """Log lines in ``seq`` order; answered by ``log_ack`` (§6.7)."""

    entries: Annotated[list[LogEntry], Meta(max_length=MAX_LOG_ENTRIES)] = []


class FetchTask(MessageBase, tag="fetch_task", kw_only=True):
    """Second stage: ask for the signed manifest of an accepted task (§6.3)."""

    task_id: Name


class ChunkRequest(MessageBase, tag="chunk_request", kw_only=True):
    """Pull chunk ``index`` of the artifact ``sha256`` of a task (§6.5)."""

    task_id: Name
    sha256: Sha256
    index: Index


class UploadOffer(MessageBase, tag="upload_offer", kw_only=True):
    """Start or resume pushing a build artifact (§6.6)."""

    task_id: Name
    sha256: Sha256
    name: Label
    size_bytes: Count
    chunk_bytes: ChunkBytes = DEFAULT_CHUNK_BYTES


class UploadChunk(MessageBase, tag="upload_chunk", kw_only=True):
    """One chunk of a build artifact."""

    task_id: Name
    sha256: Sha256
    index: Index
    data: ChunkData


class RequestAck(MessageBase, tag="request_ack", kw_only=True):
    """A manager request was carried out (``ok``) or refused (§6.8)."""

    request_id: Name
    ok: bool = True
    message: Text = ""


class Bye(MessageBase, tag="bye", kw_only=True):
    """The agent shuts down cleanly."""

    reason: Text = ""


class Subscribe(MessageBase, tag="subscribe", kw_only=True):
    """ZeroMQ link only: the hint topics of this connection are the agent's own id, ``ALL``
    and these tags (§6.9). Sent before anything else on every new connection and again when
    the tags change; the manager's transport consumes it (ADR 0015)."""

    tags: Annotated[list[Name], Meta(max_length=1000)] = []


# --- manager -> agent (§4.2) ------------------------------------------------------------


class Welcome(MessageBase, tag="welcome", kw_only=True):
    """Answer to ``hello``: what the manager has stored and how often to send heartbeats.

    ``revocations`` (optional) is the CA-signed revocation list of operator keys
    (:func:`swarmdeploy.crypto.operator.issue_revocation_list`); empty while no key is
    revoked. ``stops`` (optional) names the open stop requests (the requests themselves
    follow, as every open request does).
    """

    log_acked_seq: Count = 0
    heartbeat_interval_s: Annotated[float, Meta(gt=0, le=86400)] = 15.0
    server_time_ms: Count = 0
    revocations: Annotated[bytes, Meta(max_length=256 * 1024)] = b""
    #: Task ids with a stop request still open for this target ("" : stop everything),
    #: so that an agent that just started restarts none of them (§6.2).
    stops: Annotated[list[OptName], Meta(max_length=256)] = []
    #: The algorithm of the agent's ``hello.compression`` the manager chose (§2.1): both
    #: sides may now send compressed envelopes. "": none.
    compression: Label = ""


class Announce(MessageBase, tag="announce", kw_only=True):
    """First stage of a delivery: enough to assess the task, nothing to run (§6.3)."""

    task_id: Name
    kind: Kind = "deploy"
    size_bytes: Count = 0
    unpacked_bytes: Count = 0
    arch: Annotated[list[Label], Meta(max_length=64)] = []
    debug: bool = False
    expires_at_ms: Count = 0
    #: The task's ``deploy.requires`` minima (0: none); ``arch`` above is its architectures.
    min_free_disk_bytes: Count = 0
    min_free_memory_bytes: Count = 0
    #: How often an operator retried this (task, target) pair; an agent that ended the task
    #: in a final state assesses it again when ``attempt`` is higher than the one it ended.
    attempt: Count = 0


class Task(MessageBase, tag="task", kw_only=True):
    """Second stage: the signed manifest (canonical JSON of a :class:`TaskManifest`)."""

    task_id: Name
    manifest: Annotated[bytes, Meta(max_length=MAX_CHUNK_BYTES)]
    signature: Annotated[bytes, Meta(max_length=1024)] = b""
    certificate: Annotated[bytes, Meta(max_length=16384)] = b""


class Chunk(MessageBase, tag="chunk", kw_only=True):
    """One chunk of an artifact, answering a ``chunk_request``."""

    task_id: Name
    sha256: Sha256
    index: Index
    data: ChunkData


class StateAck(MessageBase, tag="state_ack", kw_only=True):
    """The report (task, state) is persisted (``ok``) or refused; stop re-sending it."""

    task_id: Name
    state: TargetState
    ok: bool = True
    current: TargetState | None = None
    message: Text = ""


class LogAck(MessageBase, tag="log_ack", kw_only=True):
    """Every log line with ``seq <= upto_seq`` is stored."""

    upto_seq: Count


class UploadAck(MessageBase, tag="upload_ack", kw_only=True):
    """The manager holds chunks ``0 .. next_index-1``; ``complete``: stored and verified."""

    task_id: Name
    sha256: Sha256
    next_index: Index = 0
    complete: bool = False


class Stop(MessageBase, tag="stop", kw_only=True):
    """Stop the processes of ``task_id``, or of everything when it is empty."""

    request_id: Name
    task_id: OptName = ""


class LogRequest(MessageBase, tag="log_request", kw_only=True):
    """Send the buffered output kept since ``since_ms``."""

    request_id: Name
    since_ms: Count = 0


class TerminalCommand(MessageBase, tag="terminal", kw_only=True):
    """Run one terminal command. ``statement`` (base64 of the canonical JSON of a
    ``crypto.requests.RequestStatement``), ``signature`` (base64) and ``certificate`` (the
    signer's operator certificate, as text) carry the operator's signature; an agent with
    trust anchors refuses a command without them (docs/protocol.md §6.8)."""

    request_id: Name
    command: Annotated[str, Meta(min_length=1, max_length=MAX_COMMAND_CHARS)]
    statement: Annotated[str, Meta(max_length=32_768)] = ""
    signature: Annotated[str, Meta(max_length=128)] = ""
    certificate: Annotated[str, Meta(max_length=16_384)] = ""


class TerminalStop(MessageBase, tag="terminal_stop", kw_only=True):
    """Kill the running terminal command."""

    request_id: Name


class Config(MessageBase, tag="config", kw_only=True):
    """The target's configuration as set through the API (tags reach the agent, §6.8)."""

    request_id: Name
    revision: Count
    tags: Annotated[list[Name], Meta(max_length=1000)] = []
    name: Text = ""
    location: Location | None = None


class Error(MessageBase, tag="error", kw_only=True):
    """A request could not be served; ``code`` from ``docs/protocol.md`` §7."""

    code: Label
    message: Text = ""
    in_reply_to: Label = ""
    task_id: OptName = ""
    sha256: Annotated[str, Meta(pattern=r"^(|[0-9a-f]{64})\Z")] = ""
    index: Annotated[int, Meta(ge=-1, le=2**31)] = -1


class Hint(MessageBase, tag="hint", kw_only=True):
    """Something waits for the agent; it answers with ``hello`` (§6.9). Sent only by
    ``ManagerTransport.publish``, never by ``send``."""

    reason: Label = "sync"
    task_id: OptName = ""


class UnknownMessage(msgspec.Struct, kw_only=True):
    """A message of a type this version does not know (§2): kept whole, re-encodable."""

    type: str
    v: int = PROTOCOL_VERSION
    fields: dict[str, Any] = {}


AgentMessage = (
    Hello
    | Heartbeat
    | Health
    | StateReport
    | LogBatch
    | FetchTask
    | ChunkRequest
    | UploadOffer
    | UploadChunk
    | RequestAck
    | Bye
    | Subscribe
)
ManagerMessage = (
    Welcome
    | Announce
    | Task
    | Chunk
    | StateAck
    | LogAck
    | UploadAck
    | Stop
    | LogRequest
    | TerminalCommand
    | TerminalStop
    | Config
    | Error
    | Hint
)
#: Any message ``decode`` can return.
Message = AgentMessage | ManagerMessage | UnknownMessage

_AGENT_TYPES: tuple[type[MessageBase], ...] = (
    Hello, Heartbeat, Health, StateReport, LogBatch, FetchTask, ChunkRequest, UploadOffer,
    UploadChunk, RequestAck, Bye, Subscribe,
)  # fmt: skip
_MANAGER_TYPES: tuple[type[MessageBase], ...] = (
    Welcome, Announce, Task, Chunk, StateAck, LogAck, UploadAck, Stop, LogRequest,
    TerminalCommand, TerminalStop, Config, Error, Hint,
)  # fmt: skip


def type_name(cls: type[MessageBase]) -> str:
    """The wire ``type`` of a message class."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


#: Wire type -> struct, for every known message.
MESSAGE_TYPES: dict[str, type[MessageBase]] = {
    type_name(c): c for c in _AGENT_TYPES + _MANAGER_TYPES
}
#: Types an agent may send on the addressed link.
AGENT_TO_MANAGER: frozenset[str] = frozenset(type_name(c) for c in _AGENT_TYPES)
#: Types the manager may send (``hint`` only through ``publish``).
MANAGER_TO_AGENT: frozenset[str] = frozenset(type_name(c) for c in _MANAGER_TYPES)
HINT_TYPES: frozenset[str] = frozenset({"hint"})


def message_type(msg: MessageBase | UnknownMessage) -> str:
    """The wire ``type`` of a message (also for :class:`UnknownMessage`)."""
    if isinstance(msg, UnknownMessage):
        return msg.type
    return type_name(type(msg))


def encode(
    msg: MessageBase | UnknownMessage, *, max_bytes: int = MAX_MESSAGE_BYTES, compression: str = ""
) -> bytes:
    """Validate ``msg`` and encode it as MessagePack bytes (``v`` and ``type`` always present);
    with ``compression`` (negotiated with the peer, §2.1) a large message may go as a
    compressed envelope (:mod:`swarmdeploy.protocol.compression`).

    Raises :class:`MessageError` when a field violates the schema, an ``extra`` key collides
    with a known field, or the message exceeds ``max_bytes`` (code ``too_large``).
    """
    if isinstance(msg, UnknownMessage):
        data: dict[str, Any] = dict(msg.fields)
        data.update(v=msg.v, type=msg.type)
        return pack(data, max_bytes=max_bytes)
    data = to_wire(msg)
    data["v"] = msg.v
    from_wire(type(msg), data)  # validates: a sender's bug is caught where it happens
    packed = pack(data, max_bytes=max_bytes)
    envelope = compression and compress(message_type(msg), packed, compression)
    if envelope:
        envelope["v"] = PROTOCOL_VERSION
        return pack(envelope, max_bytes=max_bytes)
    return packed


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode MessagePack bytes into a message; a compressed envelope (§2.1) is expanded into
    at most ``max_bytes`` and its inner message decoded.

    Unknown fields are kept in ``extra``; an unknown ``type`` gives :class:`UnknownMessage`.
    Raises :class:`MessageError` (and nothing else) for anything that is not a valid message
    of a supported version.
    """
    raw = unpack(data, max_bytes=max_bytes)
    if raw.get("type") == ENVELOPE:
        raw = unpack(expand(raw, max_bytes=max_bytes), max_bytes=max_bytes)
        if raw.get("type") == ENVELOPE:
            raise MessageError("a compressed message must not hold another one")
    version = raw.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MessageError("the message has no integer version 'v'")
    if version not in SUPPORTED_VERSIONS:
        raise MessageError(f"protocol version {version} is not supported", "unsupported_version")
    kind = raw.get("type")
    if not isinstance(kind, str) or not 0 < len(kind) <= 64:
        raise MessageError("the message has no valid 'type'")
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        fields = {k: v for k, v in raw.items() if k not in ("v", "type")}
        return UnknownMessage(type=kind, v=version, fields=fields)
    return cast(Message, from_wire(cls, raw))


# --- hint topics (§1, §6.9) -------------------------------------------------------------

ALL_TOPIC = b"ALL\x00"


def _topic(prefix: str, name: str) -> bytes:
    if not valid_name(name):
        raise MessageError(f"invalid topic name {name!r}")
    return f"{prefix}-{name}\x00".encode()


def id_topic(target_id: str) -> bytes:
    """Topic frame for hints to one target: ``ID-<id>`` plus a NUL terminator."""
    return _topic("ID", target_id)


def tag_topic(tag: str) -> bytes:
    """Topic frame for hints to every target carrying ``tag``: ``TAG-<tag>`` plus NUL."""
    return _topic("TAG", tag)
