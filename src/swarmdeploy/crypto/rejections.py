"""Why a signed object (task manifest, operator certificate, revocation list, trust anchor,
encrypted key) must not be used: the verification branch of the :mod:`swarmdeploy.crypto`
error tree.

``CryptoError`` (:mod:`swarmdeploy.crypto.errors`)
 ├── ``VerificationError``     do not act on the object; report ``code``; never retry it
 │    ├── ``Malformed``               bytes that are not a well-formed signed object
 │    ├── ``BadSignature``            the signature does not verify (tampered bytes)
 │    ├── ``UnknownSigner``           no trust anchor vouches for the signer
 │    ├── ``RevokedSigner``           the signer's key or certificate is revoked
 │    ├── ``NotAuthorized``           the signer's role may not sign this kind of object
 │    ├── ``CertificateExpired``      the signer's certificate is not valid at that time
 │    ├── ``ManifestExpired``         the manifest's delivery deadline has passed (freeze)
 │    ├── ``RequestExpired``          a signed request is outside its time window
 │    ├── ``Replayed``                a signed request's nonce was seen before (replay)
 │    ├── ``Rollback``                the sequence number is not newer (rollback, replay)
 │    ├── ``WrongTarget``             the manifest is not addressed to this target
 │    ├── ``WrongTask``               the manifest describes another task (mix-and-match)
 │    ├── ``ArtifactMismatch``        an artifact's size or SHA-256 differs from the manifest
 │    └── ``AnchorMismatch``          the manager's CA is not the one pinned at provisioning
 └── ``DecryptionFailed``      wrong passphrase or key, or a modified encrypted key file

Every class carries a stable ``code`` (the same string goes into ``state`` reasons and API
answers), so a caller can tell the failures apart without parsing messages.
"""

from __future__ import annotations

from swarmdeploy.crypto.errors import CryptoError


class VerificationError(CryptoError):
    """A signed object failed a check; ``code`` names which one (stable, wire-safe)."""

    code = "verification_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Malformed(VerificationError):
    """The bytes are not a well-formed signed object of the expected kind."""

    code = "malformed"


class BadSignature(VerificationError):
    """The signature does not verify over the exact bytes received."""

    code = "bad_signature"


class UnknownSigner(VerificationError):
    """The signer's certificate was not issued by any trust anchor."""

    code = "unknown_signer"


class RevokedSigner(VerificationError):
    """The signer's certificate serial or key id is on the revocation list."""

    code = "revoked_signer"


class NotAuthorized(VerificationError):
    """The signer's certified role does not allow signing this object."""

    code = "signer_not_authorized"


class CertificateExpired(VerificationError):
    """The signer's certificate is not yet valid or no longer valid at the relevant time."""

    code = "certificate_expired"


class ManifestExpired(VerificationError):
    """The manifest's expiry has passed: it may be an old manifest held back (freeze)."""

    code = "manifest_expired"


class RequestExpired(VerificationError):
    """A signed operator request is expired, issued in the future, or valid for too long."""

    code = "request_expired"


class Replayed(VerificationError):
    """A signed operator request was carried out before (its nonce is remembered)."""

    code = "replayed"


class Rollback(VerificationError):
    """The manifest's (or revocation list's) number is not newer than the last one accepted."""

    code = "rollback"


class WrongTarget(VerificationError):
    """The manifest's selector does not name this target (by id or tag)."""

    code = "wrong_target"


class WrongTask(VerificationError):
    """The manifest's task id is not the task it was delivered as."""

    code = "wrong_task"


class ArtifactMismatch(VerificationError):
    """An artifact's size or SHA-256 is not what the signed manifest says."""

    code = "artifact_mismatch"


class AnchorMismatch(VerificationError):
    """The CA presented by the manager does not match the pinned trust anchor."""

    code = "anchor_mismatch"


class DecryptionFailed(CryptoError):
    """An encrypted key could not be decrypted: wrong passphrase or key, or modified file."""

    code = "decryption_failed"
