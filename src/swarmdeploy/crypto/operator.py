"""Operator key certificates and revocation lists: compact statements signed by the CA.

ADR 0004 explains why these are not X.509: the agent verifies them with PyNaCl alone, the
format has one shape (nothing optional to misparse), and it fits in the ``task`` message's
``certificate`` field many times over.

An operator certificate is canonical JSON (sorted keys, no whitespace) of
:class:`OperatorCertificate`, signed with the CA's Ed25519 key over
``CERT_DOMAIN || body``; on the wire it travels as the JSON envelope
``{"body": <base64 body>, "signature": <base64>}``. The signature covers the exact body bytes,
so nothing is ever re-serialised before verification. Revocation lists work the same way
(``CRL_DOMAIN``). The domain prefixes keep a CA signature over one kind of object (or over a
device identity key, :meth:`~swarmdeploy.crypto.ca.CertificateAuthority.sign`) from being
valid for another.

Signing takes any ``Signer`` (``bytes -> 64-byte signature``): the manager may pass
``CertificateAuthority.sign`` (``cryptography``) or :func:`seed_signer` (PyNaCl). No I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from swarmdeploy.crypto.anchors import AnchorKey, AnchorSet, key_fingerprint
from swarmdeploy.crypto.rejections import (
    BadSignature,
    CertificateExpired,
    Malformed,
    NotAuthorized,
    Rollback,
    UnknownSigner,
)

CERT_DOMAIN = b"swarmdeploy operator-certificate v1\x00"
CRL_DOMAIN = b"swarmdeploy revocation-list v1\x00"
FORMAT_VERSION = 1
#: Roles whose keys may sign tasks (a ``viewer`` may hold a key but never sign with it).
SIGNING_ROLES = frozenset({"operator", "admin"})
#: The largest body of an operator certificate.
MAX_ENVELOPE_BYTES = 8192
#: The largest body of a revocation list: about 1,500 revoked keys (serial and key id each).
MAX_REVOCATION_LIST_BYTES = 96 * 1024
Signer = Callable[[bytes], bytes]

_Serial = Annotated[int, Meta(ge=1, le=2**63 - 1)]
_Ms = Annotated[int, Meta(ge=0, le=2**63 - 1)]
_KeyId = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")]
_Fingerprint = Annotated[str, Meta(pattern=r"^sha256:[0-9a-f]{64}\Z")]
_Key = Annotated[bytes, Meta(min_length=32, max_length=32)]
_T = TypeVar("_T")


def key_id(public_key: bytes) -> str:
    """The operator key id: the first 16 bytes of SHA-256 of the raw key, in hex."""
    return hashlib.sha256(public_key).hexdigest()[:32]


def seed_signer(seed: bytes) -> Signer:
    """A :data:`Signer` for a 32-byte Ed25519 seed (PyNaCl)."""
    key = SigningKey(seed)
    return lambda data: bytes(key.sign(data).signature)


def public_key_of(seed: bytes) -> bytes:
    """The raw public key of a 32-byte Ed25519 seed."""
    return bytes(SigningKey(seed).verify_key)


class OperatorCertificate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the CA certifies about one operator signing key (all fields signed)."""

    v: Literal[1] = 1
    serial: _Serial
    key_id: _KeyId
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    role: Literal["viewer", "operator", "admin"]
    public_key: _Key
    issuer: _Fingerprint
    not_before_ms: _Ms
    not_after_ms: _Ms

    def valid_at(self, at_ms: int, skew_ms: int = 0) -> bool:
        """Whether ``at_ms`` lies in ``[not_before - skew, not_after]``."""
        return self.not_before_ms - skew_ms <= at_ms <= self.not_after_ms


class RevocationList(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Revoked operator certificates (by serial) and keys (by key id), issued by the CA.

    ``number`` grows with every list the CA issues; an agent keeps the highest it accepted,
    so an old list cannot be replayed to un-revoke a key.
    """

    v: Literal[1] = 1
    issuer: _Fingerprint
    number: _Serial
    issued_at_ms: _Ms
    serials: Annotated[frozenset[_Serial], Meta(max_length=100_000)] = frozenset()
    key_ids: Annotated[frozenset[_KeyId], Meta(max_length=100_000)] = frozenset()


class _Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    body: Annotated[bytes, Meta(max_length=MAX_REVOCATION_LIST_BYTES)]
    signature: Annotated[bytes, Meta(min_length=64, max_length=64)]


def _seal(domain: bytes, body: bytes, signer: Signer) -> bytes:
    signature = signer(domain + body)
    return msgspec.json.encode(_Envelope(body=body, signature=signature), order="sorted")


def _open(data: bytes, what: str, max_body: int = MAX_ENVELOPE_BYTES) -> _Envelope:
    if len(data) > 2 * max_body:
        raise Malformed(f"the {what} is too large")
    try:
        envelope = msgspec.json.decode(data, type=_Envelope, strict=True)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError):
        raise Malformed(f"the {what} is not a signed envelope") from None
    # One encoding only: base64 with stray padding bits or extra whitespace would decode to
    # the same bytes; refusing them keeps "any changed byte is refused" literally true.
    if msgspec.json.encode(envelope, order="sorted") != data:
        raise Malformed(f"the {what} is not in canonical form")
    if len(envelope.body) > max_body:
        raise Malformed(f"the {what} is too large")
    return envelope


def _decode(body: bytes, kind: type[_T], what: str) -> _T:
    try:
        return msgspec.json.decode(body, type=kind, strict=True)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError) as exc:
        raise Malformed(f"invalid {what}: {exc}") from None


def _check_signature(anchor: AnchorKey, domain: bytes, envelope: _Envelope, what: str) -> None:
    try:
        VerifyKey(anchor.public_key).verify(domain + envelope.body, envelope.signature)
    except (BadSignatureError, ValueError):
        raise BadSignature(f"the CA signature of the {what} does not verify") from None


def issue_operator_certificate(cert: OperatorCertificate, ca_signer: Signer) -> bytes:
    """Sign ``cert`` with the CA; return the wire bytes (the ``certificate`` of a task).

    Raises :class:`Malformed` if ``cert.key_id`` does not belong to ``cert.public_key`` or
    the validity interval is empty: a CA must not certify something verifiers will refuse.
    """
    if cert.key_id != key_id(cert.public_key):
        raise Malformed("key_id does not match the public key")
    if cert.not_after_ms <= cert.not_before_ms:
        raise Malformed("the certificate's validity interval is empty")
    body = msgspec.json.encode(cert, order="sorted")
    return _seal(CERT_DOMAIN, body, ca_signer)


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """An operator certificate whose CA signature verified, and the anchor that issued it."""

    cert: OperatorCertificate
    anchor: AnchorKey

    def require_valid_at(self, at_ms: int, skew_ms: int = 0) -> None:
        """Raise :class:`CertificateExpired` unless both the issuing CA and the certificate
        are valid at ``at_ms`` (``skew_ms`` of tolerance for a slow clock before the start)."""
        if not self.anchor.not_before_ms - skew_ms <= at_ms <= self.anchor.not_after_ms:
            raise CertificateExpired("the CA certificate is not valid at that time")
        if not self.cert.valid_at(at_ms, skew_ms):
            name = self.cert.name
            raise CertificateExpired(f"the certificate of {name!r} is not valid at that time")


def open_operator_certificate(data: bytes, anchors: AnchorSet) -> CertifiedKey:
    """Check an operator certificate's origin, but not yet its validity period.

    Order: envelope well-formed, issuer is an anchor (:class:`UnknownSigner`), CA signature
    (:class:`BadSignature`), body well-formed with a consistent key id (:class:`Malformed`).
    Revocation is checked by :mod:`swarmdeploy.crypto.signing`, which holds the list.
    """
    envelope = _open(data, "operator certificate")
    issuer = _decode(envelope.body, _IssuerOnly, "operator certificate").issuer
    anchor = anchors.key_for(issuer)
    if anchor is None:
        raise UnknownSigner("the operator certificate was not issued by a trusted CA")
    _check_signature(anchor, CERT_DOMAIN, envelope, "operator certificate")
    cert = _decode(envelope.body, OperatorCertificate, "operator certificate")
    if cert.key_id != key_id(cert.public_key):
        raise Malformed("the operator certificate's key id does not match its key")
    return CertifiedKey(cert, anchor)


def verify_operator_certificate(
    data: bytes, anchors: AnchorSet, *, now_ms: int, skew_ms: int = 0
) -> OperatorCertificate:
    """:func:`open_operator_certificate`, then :meth:`CertifiedKey.require_valid_at` now."""
    certified = open_operator_certificate(data, anchors)
    certified.require_valid_at(now_ms, skew_ms)
    return certified.cert


def unverified_certificate(data: bytes) -> OperatorCertificate:
    """The body of an operator certificate **without checking anything but its form**.

    For the signing side only (to learn which key a certificate names); a verifier must use
    :func:`open_operator_certificate`.
    """
    envelope = _open(data, "operator certificate")
    return _decode(envelope.body, OperatorCertificate, "operator certificate")


def require_signing_role(cert: OperatorCertificate) -> None:
    """Raise :class:`NotAuthorized` unless the certified role may sign tasks."""
    if cert.role not in SIGNING_ROLES:
        raise NotAuthorized(f"role {cert.role!r} of {cert.name!r} may not sign tasks")


class _IssuerOnly(msgspec.Struct):
    issuer: _Fingerprint


def issue_revocation_list(crl: RevocationList, ca_signer: Signer) -> bytes:
    """Sign a revocation list with the CA; return its wire bytes. :class:`Malformed` if it
    lists more than fits in :data:`MAX_REVOCATION_LIST_BYTES` (agents would refuse it)."""
    body = msgspec.json.encode(crl, order="sorted")
    if len(body) > MAX_REVOCATION_LIST_BYTES:
        raise Malformed(
            f"a revocation list of {len(crl.key_ids)} keys exceeds "
            f"{MAX_REVOCATION_LIST_BYTES} bytes"
        )
    return _seal(CRL_DOMAIN, body, ca_signer)


def verify_revocation_list(data: bytes, anchors: AnchorSet, *, last_number: int) -> RevocationList:
    """Check a revocation list; :class:`Rollback` if its ``number`` is below ``last_number``.

    The same number is accepted again (re-delivery is idempotent); a lower one would
    un-revoke keys and is refused. Other failures as :func:`verify_operator_certificate`.
    """
    envelope = _open(data, "revocation list", MAX_REVOCATION_LIST_BYTES)
    issuer = _decode(envelope.body, _IssuerOnly, "revocation list").issuer
    anchor = anchors.key_for(issuer)
    if anchor is None:
        raise UnknownSigner("the revocation list was not issued by a trusted CA")
    _check_signature(anchor, CRL_DOMAIN, envelope, "revocation list")
    crl = _decode(envelope.body, RevocationList, "revocation list")
    if crl.number < last_number:
        raise Rollback(f"revocation list {crl.number} is older than {last_number}")
    return crl


def ca_issuer(ca_public_key: bytes) -> str:
    """The ``issuer`` value naming a CA in certificates and lists (its key fingerprint)."""
    return key_fingerprint(ca_public_key)
