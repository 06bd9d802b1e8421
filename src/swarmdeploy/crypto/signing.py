"""Task manifest signatures: the operator signs, the agent verifies (CRD-72/75/78, issue 5).

The signature is a raw 64-byte Ed25519 signature over ``MANIFEST_DOMAIN || manifest`` where
``manifest`` is the exact canonical JSON the ``task`` message carries (``docs/protocol.md``
§4.2); the ``certificate`` is the signer's operator certificate (:mod:`.operator`). Because
the agent verifies the bytes it received and then executes what it decodes from *those
bytes*, the signature binds everything in the manifest: task id, kind, every stage's exact
commands, the target selector, every artifact's SHA-256 and size, the sequence number, issue
time, expiry and the sandbox policy.

:func:`verify_task` runs on receipt (before install); :func:`verify_installed` before every
start of a run command (after a reboot too). Each failure raises its own
:class:`~swarmdeploy.crypto.rejections.VerificationError` subclass with a stable ``code``;
``docs/security.md`` maps each to the attack it defeats. Pure functions: no I/O (except
:func:`verify_artifact` on a path), no clock -- ``now_ms`` is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import msgspec
from msgspec import Meta
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.crypto.operator import (
    CertifiedKey,
    OperatorCertificate,
    RevocationList,
    Signer,
    open_operator_certificate,
    require_signing_role,
    unverified_certificate,
)
from swarmdeploy.crypto.rejections import (
    ArtifactMismatch,
    BadSignature,
    CertificateExpired,
    Malformed,
    ManifestExpired,
    RevokedSigner,
    Rollback,
    WrongTarget,
    WrongTask,
)
from swarmdeploy.protocol.selector import Selector

MANIFEST_DOMAIN = b"swarmdeploy task-manifest v1\x00"
SIGNATURE_BYTES = 64
#: Clock tolerance for "not valid before" checks: devices without a real-time clock run slow.
DEFAULT_SKEW_MS = 5 * 60 * 1000
MAX_MANIFEST_BYTES = 1024 * 1024
_HASH_CHUNK = 1024 * 1024
_Positive = Annotated[int, Meta(ge=1, le=2**63 - 1)]
_Ms = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class ArtifactFacts(msgspec.Struct, frozen=True):
    """The signed identity of one artifact."""

    name: str
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
    size_bytes: _Ms


class SignedFacts(msgspec.Struct, frozen=True, kw_only=True):
    """The manifest fields that verification decides on, read from the signed bytes.

    Other fields (commands, sandbox policy, ...) are bound by the signature over the whole
    manifest and are read by :func:`swarmdeploy.protocol.manifest.decode_manifest` from the
    same verified bytes. Unknown fields are ignored here, not refused: refusing them is the
    job of the full decoder.
    """

    task_id: str
    kind: str = "deploy"
    sequence: _Positive
    created_at_ms: _Ms
    expires_at_ms: _Positive
    target_ids: frozenset[str] = frozenset()
    target_tags: frozenset[str] = frozenset()
    target_all: frozenset[str] = frozenset()
    target_not: frozenset[str] = frozenset()
    target_not_ids: frozenset[str] = frozenset()
    artifacts: tuple[ArtifactFacts, ...] = ()
    app: str = ""

    @classmethod
    def from_json(cls, manifest: bytes) -> SignedFacts:
        """Decode the facts; :class:`Malformed` if a needed field is missing or invalid, or
        the manifest expires no later than it was issued."""
        if len(manifest) > MAX_MANIFEST_BYTES:
            raise Malformed("the manifest is too large")
        try:
            facts = msgspec.json.decode(manifest, type=cls, strict=True)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError) as exc:
            raise Malformed(f"invalid signed manifest: {exc}") from None
        if facts.expires_at_ms <= facts.created_at_ms:
            raise Malformed("the manifest expires before it was issued")
        return facts

    @property
    def selector(self) -> Selector:
        """The signed selector (``docs/selectors.md``)."""
        return Selector.of(
            self.target_ids, self.target_tags, self.target_all, self.target_not,
            self.target_not_ids,
        )  # fmt: skip

    def addressed_to(self, target_id: str, target_tags: Collection[str]) -> bool:
        """Whether the signed selector admits ``target_id`` with its current
        ``target_tags`` -- a device that registered after signing is admitted by its tags
        (docs/adr/0010); an empty selector names nobody."""
        return self.selector.matches(target_id, target_tags)


@dataclass(frozen=True, slots=True)
class Revocations:
    """What the agent knows to be revoked: certificate serials and operator key ids."""

    serials: frozenset[int] = frozenset()
    key_ids: frozenset[str] = frozenset()

    @classmethod
    def from_list(cls, crl: RevocationList) -> Revocations:
        """The revocations of a verified :class:`~.operator.RevocationList`."""
        return cls(frozenset(crl.serials), frozenset(crl.key_ids))

    def check(self, cert: OperatorCertificate) -> None:
        """Raise :class:`RevokedSigner` if ``cert``'s serial or key id is revoked."""
        if cert.serial in self.serials or cert.key_id in self.key_ids:
            raise RevokedSigner(f"the key of {cert.name!r} (serial {cert.serial}) is revoked")


@dataclass(frozen=True, slots=True)
class Target:
    """Who is verifying: the target id and its current tags (selector matching)."""

    target_id: str
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class VerifiedManifest:
    """A manifest whose every check passed: its exact bytes, facts and signer."""

    manifest: bytes
    facts: SignedFacts
    signer: OperatorCertificate


def _check_manifest_signature(manifest: bytes, signature: bytes, public_key: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise BadSignature(f"a manifest signature has {SIGNATURE_BYTES} bytes")
    try:
        VerifyKey(public_key).verify(MANIFEST_DOMAIN + manifest, signature)
    except (BadSignatureError, ValueError):
        raise BadSignature("the manifest signature does not verify") from None


def sign_manifest(manifest: bytes, signer: Signer, certificate: bytes) -> tuple[bytes, bytes]:
    """Sign canonical manifest bytes with an operator key; return ``(signature, certificate)``.

    Refuses (:class:`Malformed`) a manifest whose facts are missing or invalid, and
    (:class:`BadSignature`) a ``signer`` that does not hold the certificate's key -- the
    manager must never send a task that agents will refuse anyway.
    """
    SignedFacts.from_json(manifest)
    signature = signer(MANIFEST_DOMAIN + manifest)
    check_signed(manifest, signature, certificate)
    return signature, certificate


def check_signed(manifest: bytes, signature: bytes, certificate: bytes) -> OperatorCertificate:
    """Manager side: ``signature`` still verifies over ``manifest`` with the certificate's
    key (i.e. the manifest did not change after signing). Raises :class:`BadSignature`."""
    cert = unverified_certificate(certificate)
    _check_manifest_signature(manifest, signature, cert.public_key)
    return cert


def _verify_origin(
    manifest: bytes, signature: bytes, certificate: bytes, anchors: AnchorSet, revoked: Revocations
) -> tuple[SignedFacts, CertifiedKey]:
    """Steps shared by receipt and start: signer certified by an anchor, not revoked, allowed
    to sign, signature over the exact bytes, facts well-formed, issued while the signer's
    certificate was valid."""
    certified = open_operator_certificate(certificate, anchors)  # UnknownSigner/BadSignature
    revoked.check(certified.cert)  # RevokedSigner
    require_signing_role(certified.cert)  # NotAuthorized
    _check_manifest_signature(manifest, signature, certified.cert.public_key)
    facts = SignedFacts.from_json(manifest)
    # A key may sign only while certified: a leaked expired key cannot sign "old" tasks.
    try:
        certified.require_valid_at(facts.created_at_ms)
    except CertificateExpired:
        raise CertificateExpired("the manifest was issued outside the signer's validity") from None
    return facts, certified


def verify_task(
    manifest: bytes,
    signature: bytes,
    certificate: bytes,
    *,
    anchors: AnchorSet,
    revoked: Revocations,
    target: Target,
    task_id: str,
    now_ms: int,
    last_sequence: int,
    skew_ms: int = DEFAULT_SKEW_MS,
) -> VerifiedManifest:
    """Verify a received task before anything of it is installed (``docs/security.md``).

    ``last_sequence`` is the highest sequence number the agent has accepted before (0 for
    none); ``task_id`` the id the task was announced and delivered as. Raises, in check
    order: :class:`Malformed`, :class:`UnknownSigner`, :class:`BadSignature`,
    :class:`RevokedSigner`, :class:`NotAuthorized`, :class:`CertificateExpired` (signer not
    valid now or at issue time), :class:`WrongTask`, :class:`WrongTarget`,
    :class:`ManifestExpired` (freeze), :class:`Rollback` (rollback or replay).
    """
    facts, certified = _verify_origin(manifest, signature, certificate, anchors, revoked)
    certified.require_valid_at(now_ms, skew_ms)
    if facts.task_id != task_id:
        raise WrongTask(f"the manifest is for task {facts.task_id!r}, not {task_id!r}")
    if not facts.addressed_to(target.target_id, target.tags):
        raise WrongTarget(f"task {task_id} is not addressed to {target.target_id!r}")
    if now_ms > facts.expires_at_ms:
        raise ManifestExpired(f"task {task_id} expired at {facts.expires_at_ms} ms")
    if facts.sequence <= last_sequence:
        raise Rollback(f"sequence {facts.sequence} is not newer than {last_sequence}")
    return VerifiedManifest(manifest, facts, certified.cert)


def verify_installed(
    manifest: bytes,
    signature: bytes,
    certificate: bytes,
    *,
    anchors: AnchorSet,
    revoked: Revocations,
    target: Target,
    installed_sequence: int,
) -> VerifiedManifest:
    """Verify the stored manifest of the installed deployment before starting a command.

    Same origin checks as :func:`verify_task` -- so a key revoked since the install stops
    the deployment from starting -- plus: still addressed to this target, and its sequence
    is exactly the one recorded at install (:class:`Rollback` if the stored manifest was
    swapped for another validly signed one). Expiry is *not* checked: it bounds delivery,
    not how long an installed deployment may run; the certificate must have been valid when
    the manifest was issued, which :func:`verify_task` checked against the clock at install.
    """
    facts, certified = _verify_origin(manifest, signature, certificate, anchors, revoked)
    if not facts.addressed_to(target.target_id, target.tags):
        raise WrongTarget(f"task {facts.task_id} is not addressed to {target.target_id!r}")
    if facts.sequence != installed_sequence:
        raise Rollback(
            f"stored sequence {facts.sequence} is not the installed {installed_sequence}"
        )
    return VerifiedManifest(manifest, facts, certified.cert)


class ArtifactLike(Protocol):
    """What :func:`verify_artifact` needs (e.g. ``ArtifactInfo`` or :class:`ArtifactFacts`)."""

    @property
    def sha256(self) -> str: ...

    @property
    def size_bytes(self) -> int: ...


def verify_artifact(info: ArtifactLike, content: bytes | Path) -> None:
    """Check ``content`` (bytes, or a file read in 1 MiB pieces) against the signed size and
    SHA-256; raise :class:`ArtifactMismatch` on any difference or a missing file."""
    digest = hashlib.sha256()
    if isinstance(content, bytes):
        size = len(content)
        digest.update(content)
    else:
        try:
            with content.open("rb") as fh:
                size = 0
                while chunk := fh.read(_HASH_CHUNK):
                    size += len(chunk)
                    if size > info.size_bytes:
                        break
                    digest.update(chunk)
        except FileNotFoundError:
            raise ArtifactMismatch(f"artifact {info.sha256[:12]} is missing") from None
    if size != info.size_bytes:
        raise ArtifactMismatch(f"artifact {info.sha256[:12]} has the wrong size")
    if digest.hexdigest() != info.sha256:
        raise ArtifactMismatch(f"artifact {info.sha256[:12]} does not match its SHA-256")
