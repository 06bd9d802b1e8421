"""Trust anchors and the verification of signed task manifests (CRD-72/75/78).

An anchor file (``--trust-anchor FILE``, provisioned at install time) holds PEM certificates
and/or Ed25519 public keys (one base64 line each, 32 raw bytes; ``#`` starts a comment). A
certificate pins the manager's CA at registration: the ``caCertificate`` the manager
answers must be one of them (otherwise the first contact is trust on first use). The
Ed25519 keys of the anchors, plus the CA key learned at registration, are the keys a
manifest signature may verify against.

Certificates are not parsed with an X.509 library (the agent stays lean: no
``cryptography``): an Ed25519 SubjectPublicKeyInfo has a fixed DER prefix, followed by the
32-byte key. Verifying certificate *chains* (operator keys certified by the CA) is the later
issue "End-to-end package security" (issue 5).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from swarmdeploy.agent.errors import ConfigError

#: DER of ``SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (33 bytes) }`` up to the key.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
SIGNATURE_BYTES = 64
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """Raw Ed25519 public keys and DER certificates the agent trusts."""

    keys: tuple[bytes, ...] = ()
    certificates: tuple[bytes, ...] = ()

    def with_key(self, key: bytes) -> TrustAnchors:
        """These anchors plus ``key`` (e.g. the CA key learned at registration)."""
        if len(key) != 32 or key in self.keys:
            return self
        return TrustAnchors((*self.keys, key), self.certificates)


def pem_certificates(text: str) -> list[bytes]:
    """DER bytes of every PEM ``CERTIFICATE`` block in ``text``."""
    out = []
    for block in _PEM.findall(text):
        try:
            out.append(base64.b64decode("".join(block.split()), validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def certificate_key(der: bytes) -> bytes | None:
    """The Ed25519 public key of a DER certificate, or None if it has none."""
    at = der.find(ED25519_SPKI_PREFIX)
    if at < 0 or len(der) < at + len(ED25519_SPKI_PREFIX) + 32:
        return None
    start = at + len(ED25519_SPKI_PREFIX)
    return der[start : start + 32]


def parse_anchors(text: str) -> TrustAnchors:
    """Anchors from the text of an anchor file (see the module docstring)."""
    certs = pem_certificates(text)
    keys = [k for k in (certificate_key(c) for c in certs) if k is not None]
    for line in _PEM.sub("", text).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            raw = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"line {line[:40]!r} is neither PEM nor a base64 Ed25519 key")
        keys.append(raw)
    return TrustAnchors(tuple(dict.fromkeys(keys)), tuple(certs))


def load_anchors(path: Path | None) -> TrustAnchors:
    """Read ``--trust-anchor FILE`` (no file: no anchors); ConfigError if unusable."""
    if path is None:
        return TrustAnchors()
    try:
        anchors = parse_anchors(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--trust-anchor {path}: {exc}") from None
    if not anchors.keys:
        raise ConfigError(f"--trust-anchor {path} holds no Ed25519 key or certificate")
    return anchors


def ca_matches(anchors: TrustAnchors, ca_pem: str) -> bool:
    """Whether the manager's CA certificate is acceptable: pinned by an anchor certificate,
    or anything when no certificate is pinned (trust on first use)."""
    if not anchors.certificates:
        return True
    return any(der in anchors.certificates for der in pem_certificates(ca_pem))


def verify_signature(message: bytes, signature: bytes, anchors: TrustAnchors) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by an anchor key."""
    if len(signature) != SIGNATURE_BYTES or not anchors.keys:
        return False
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    for key in anchors.keys:
        try:
            VerifyKey(key).verify(message, signature)
        except (BadSignatureError, ValueError):
            continue
        return True
    return False
