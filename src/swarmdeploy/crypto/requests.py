"""Signed operator requests: a terminal command carries its operator's signature (issue 9).

A request statement is canonical JSON (sorted keys, no whitespace) of
:class:`RequestStatement` -- who asks is the signer, and the statement names what
(``kind``, ``command``), for which target, when (``issued_at_ms``, ``expires_at_ms``) and a
random ``nonce``; ``request_id`` ties it to the wire request that carries it. The operator
signs ``REQUEST_DOMAIN || statement`` with the same Ed25519 key the CA certified for task
manifests (:mod:`.operator`); the domain prefix keeps a request signature from being valid
as a manifest signature and the other way round.

:func:`verify_request` checks everything that needs no memory: certificate issued by an
anchor, not revoked, a signing role, the signature over the exact bytes, the statement's
form, the signer valid when it was issued and now, the target, the request id and kind, and
the time window (not issued in the future beyond the skew, not expired, valid at most
:data:`MAX_VALIDITY_MS`). Refusing a *replay* (the same nonce again inside its window) needs
the nonces seen, which the agent keeps (:mod:`swarmdeploy.agent.request_trust`). Pure
functions: no I/O, no clock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.crypto.operator import (
    OperatorCertificate,
    Signer,
    open_operator_certificate,
    require_signing_role,
    unverified_certificate,
)
from swarmdeploy.crypto.rejections import (
    BadSignature,
    CertificateExpired,
    Malformed,
    RequestExpired,
    WrongTarget,
    WrongTask,
)
from swarmdeploy.crypto.signing import DEFAULT_SKEW_MS, SIGNATURE_BYTES, Revocations

REQUEST_DOMAIN = b"swarmdeploy operator-request v1\x00"
#: The longest a signed request may be valid: bounds how long an agent keeps its nonce.
MAX_VALIDITY_MS = 60 * 60 * 1000
MAX_STATEMENT_BYTES = 64 * 1024
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z"
_Ms = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class RequestStatement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an operator signs for one request (every field signed)."""

    v: Literal[1] = 1
    kind: Literal["terminal"]
    request_id: Annotated[str, Meta(pattern=_NAME)]
    target_id: Annotated[str, Meta(pattern=_NAME)]
    command: Annotated[str, Meta(max_length=16_384)] = ""
    nonce: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")]
    issued_at_ms: _Ms
    expires_at_ms: _Ms


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A request statement whose every stateless check passed, and who signed it."""

    statement: RequestStatement
    signer: OperatorCertificate


def new_nonce() -> str:
    """A fresh 128-bit nonce in hex."""
    return secrets.token_hex(16)


def encode_statement(statement: RequestStatement) -> bytes:
    """The canonical bytes of ``statement`` (what is signed and sent)."""
    return msgspec.json.encode(statement, order="sorted")


def decode_statement(data: bytes) -> RequestStatement:
    """Decode statement bytes strictly; :class:`Malformed` for anything else, a validity
    interval that is empty or longer than :data:`MAX_VALIDITY_MS`, or bytes that are not
    the canonical encoding (one statement has exactly one signed form)."""
    if len(data) > MAX_STATEMENT_BYTES:
        raise Malformed("the request statement is too large")
    try:
        statement = msgspec.json.decode(data, type=RequestStatement, strict=True)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError) as exc:
        raise Malformed(f"invalid request statement: {exc}") from None
    if encode_statement(statement) != data:
        raise Malformed("the request statement is not in canonical form")
    span = statement.expires_at_ms - statement.issued_at_ms
    if not 0 < span <= MAX_VALIDITY_MS:
        raise Malformed(f"a signed request must be valid for 1 ms to {MAX_VALIDITY_MS} ms")
    return statement


def _check_signature(data: bytes, signature: bytes, public_key: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise BadSignature(f"a request signature has {SIGNATURE_BYTES} bytes")
    try:
        VerifyKey(public_key).verify(REQUEST_DOMAIN + data, signature)
    except (BadSignatureError, ValueError):
        raise BadSignature("the request signature does not verify") from None


def sign_request(statement: RequestStatement, signer: Signer, certificate: bytes) -> bytes:
    """Sign ``statement`` with an operator key; returns the signature over its canonical
    bytes. :class:`BadSignature` if ``signer`` does not hold the certificate's key."""
    data = encode_statement(statement)
    decode_statement(data)  # never sign what agents refuse as malformed
    signature = signer(REQUEST_DOMAIN + data)
    _check_signature(data, signature, unverified_certificate(certificate).public_key)
    return signature


def verify_request(
    data: bytes,
    signature: bytes,
    certificate: bytes,
    *,
    anchors: AnchorSet,
    revoked: Revocations,
    target_id: str,
    request_id: str,
    kind: str,
    now_ms: int,
    skew_ms: int = DEFAULT_SKEW_MS,
) -> VerifiedRequest:
    """Verify a signed request before acting on it (see the module docstring). Raises, in
    check order: :class:`Malformed`, :class:`UnknownSigner`, :class:`BadSignature`,
    :class:`RevokedSigner`, :class:`NotAuthorized`, :class:`CertificateExpired`,
    :class:`WrongTarget`, :class:`WrongTask` (request id or kind differ),
    :class:`RequestExpired` (outside its time window)."""
    certified = open_operator_certificate(certificate, anchors)
    revoked.check(certified.cert)
    require_signing_role(certified.cert)
    _check_signature(data, signature, certified.cert.public_key)
    statement = decode_statement(data)
    try:
        certified.require_valid_at(statement.issued_at_ms)
    except CertificateExpired:
        raise CertificateExpired("the request was issued outside the signer's validity") from None
    certified.require_valid_at(now_ms, skew_ms)
    if statement.target_id != target_id:
        raise WrongTarget(f"the request is for target {statement.target_id!r}")
    if statement.request_id != request_id or statement.kind != kind:
        raise WrongTask(f"the signature is for {statement.kind} request {statement.request_id}")
    if statement.issued_at_ms > now_ms + skew_ms:
        raise RequestExpired("the request was issued in the future")
    if now_ms > statement.expires_at_ms:
        raise RequestExpired(f"the request expired at {statement.expires_at_ms} ms")
    return VerifiedRequest(statement, certified.cert)
