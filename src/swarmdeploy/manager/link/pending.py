"""Requests to agents as the API submits them, as stored records and as wire messages
(docs/protocol.md §6.8). No I/O here; :mod:`.requests` stores and sends them.

A stored request (:class:`~swarmdeploy.storage.records.RequestRecord`) keeps its wire
``request_id`` as ``id``, its wire ``type`` as ``kind`` and the message's other fields as
``payload``, so that any replica can send it again exactly as it was first sent. ``terminal``
and ``terminal_stop`` carry a deadline (``expires_at``): they expire while the target is
away instead of running long after the operator gave up.
"""

from __future__ import annotations

from swarmdeploy.crypto.errors import CryptoError
from swarmdeploy.crypto.operator import unverified_certificate
from swarmdeploy.manager import dispatch
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.codec import from_wire, to_wire
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.storage.records import RequestRecord

RequestMessage = m.Stop | m.LogRequest | m.TerminalCommand | m.TerminalStop | m.Config
_REQUEST_TYPES: dict[str, type[RequestMessage]] = {
    "stop": m.Stop,
    "log_request": m.LogRequest,
    "terminal": m.TerminalCommand,
    "terminal_stop": m.TerminalStop,
    "config": m.Config,
}
#: Kinds the API submits; the per-target bound counts these (not the link's own ``config``).
SUBMITTED_KINDS: tuple[str, ...] = ("stop", "log_request", "terminal", "terminal_stop")


def to_message(request: dispatch.TargetRequest) -> RequestMessage:
    """The wire message of a dispatcher request (same id)."""
    if isinstance(request, dispatch.StopRequest):
        return m.Stop(request_id=request.id, task_id=request.task_id or "")
    if isinstance(request, dispatch.LogRequest):
        return m.LogRequest(request_id=request.id, since_ms=max(0, request.if_modified_since))
    if isinstance(request, dispatch.CommandRequest):
        return m.TerminalCommand(
            request_id=request.id,
            command=request.command,
            statement=request.statement,
            signature=request.signature,
            certificate=request.certificate,
        )
    return m.TerminalStop(request_id=request.id)


def is_terminal(request: dispatch.TargetRequest | RequestMessage) -> bool:
    """Whether the request belongs to the terminal (expires while the target is away)."""
    kinds = (
        dispatch.CommandRequest,
        dispatch.CommandStopRequest,
        m.TerminalCommand,
        m.TerminalStop,
    )
    return isinstance(request, kinds)


def to_record(
    target_id: str, message: RequestMessage, *, now_ms: int, terminal_expiry_ms: int
) -> RequestRecord:
    """The stored form of ``message`` for ``target_id`` (``pending``)."""
    payload = to_wire(message)
    kind = str(payload.pop("type"))
    payload.pop("request_id", None)
    payload.pop("v", None)
    expires_at = now_ms + terminal_expiry_ms if is_terminal(message) else None
    return RequestRecord(
        id=message.request_id,
        target_id=target_id,
        kind=kind,
        payload=payload,
        created_at=now_ms,
        expires_at=expires_at,
    )


def from_record(record: RequestRecord) -> RequestMessage:
    """The wire message of a stored request. Raises :class:`MessageError` for a record
    that is not a valid request (an unknown kind, a damaged payload)."""
    cls = _REQUEST_TYPES.get(record.kind)
    if cls is None:
        raise MessageError(f"{record.kind!r} is not a request type")
    return from_wire(cls, {**record.payload, "type": record.kind, "request_id": record.id})


def signing_key_id(record: RequestRecord) -> str:
    """The operator key id named by a signed terminal request's certificate ("" if none):
    the owner of its log lines (``services/log_access.py``)."""
    certificate = record.payload.get("certificate")
    if not isinstance(certificate, str) or not certificate:
        return ""
    try:
        return unverified_certificate(certificate.encode("utf-8")).key_id
    except CryptoError:
        return ""


def describe(record: RequestRecord) -> str:
    """A short human name of a request for ``$manager`` log lines."""
    if record.kind == "terminal":
        return f"terminal command {record.payload.get('command', '')!r}"
    if record.kind == "terminal_stop":
        return "terminal stop"
    return f"{record.kind} request"
