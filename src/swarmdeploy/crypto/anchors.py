"""Trust anchors: the CA keys an agent accepts operator certificates from (CRD-76/78).

Provisioned at install time with ``swarmdeploy agent --trust-anchor FILE``. The file may hold,
in any order (``#`` starts a comment):

* PEM ``CERTIFICATE`` blocks: the manager's self-signed Ed25519 CA (``DATA_DIR/ca.pem``). The
  key is taken from the SubjectPublicKeyInfo by a strict DER walk (:mod:`.der`) and the
  self-signature is checked, so a corrupted or spliced file is refused, not half-trusted;
* ``ed25519:<base64>`` (or a bare base64 line): a raw 32-byte CA public key, the form of
  ``caPublicKey`` in ``GET /rpc/server_info``;
* ``sha256:<hex>``: a fingerprint pin. A pin holds no key: the agent adopts the CA the manager
  presents at registration (:meth:`AnchorSet.adopt`) only if its key fingerprint
  (:func:`key_fingerprint`) or certificate fingerprint (:func:`certificate_fingerprint`, as
  ``openssl x509 -fingerprint -sha256`` prints it) equals a pin.

Pure functions over text and bytes; verification uses PyNaCl only (the agent has no
``cryptography``). No I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, replace

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from swarmdeploy.crypto import der
from swarmdeploy.crypto.rejections import AnchorMismatch, BadSignature, Malformed

KEY_BYTES = 32
FINGERPRINT_PREFIX = "sha256:"
_NO_LIMIT_MS = 2**63 - 1
_PEM = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n(.*?)-----END CERTIFICATE-----[ \t]*\r?\n?", re.DOTALL
)


def key_fingerprint(public_key: bytes) -> str:
    """``sha256:<hex>`` of a raw 32-byte Ed25519 key (the CA fingerprint the API shows)."""
    return FINGERPRINT_PREFIX + hashlib.sha256(public_key).hexdigest()


def certificate_fingerprint(cert_der: bytes) -> str:
    """``sha256:<hex>`` of a DER certificate (the value of ``openssl x509 -fingerprint``)."""
    return FINGERPRINT_PREFIX + hashlib.sha256(cert_der).hexdigest()


@dataclass(frozen=True, slots=True)
class AnchorKey:
    """One trusted CA key; the validity comes from its certificate (unbounded for raw keys)."""

    public_key: bytes
    not_before_ms: int = 0
    not_after_ms: int = _NO_LIMIT_MS
    cert_der: bytes = b""

    @property
    def fingerprint(self) -> str:
        """The key's :func:`key_fingerprint`; operator certificates name their issuer by it."""
        return key_fingerprint(self.public_key)


def parse_ca_certificate(cert_der: bytes) -> AnchorKey:
    """The CA key of a self-signed Ed25519 X.509 certificate (DER).

    Raises :class:`Malformed` when the bytes are not exactly such a certificate (RFC 5280
    §4.1 layout, Ed25519 everywhere, no trailing bytes) and :class:`BadSignature` when the
    self-signature does not verify with the certified key.
    """
    parts = der.expect(der.read_single(cert_der), der.SEQUENCE, "Certificate").children()
    if len(parts) != 3:
        raise Malformed("a certificate has three elements")
    tbs, outer_alg, signature = parts
    fields = der.expect(tbs, der.SEQUENCE, "tbsCertificate").children()
    if fields and fields[0].tag == der.EXPLICIT_0:
        fields = fields[1:]  # version; RFC 5280 requires nothing of it that matters here
    if len(fields) < 6:
        raise Malformed("tbsCertificate is missing fields")
    serial, inner_alg, issuer, validity, subject, spki = fields[:6]
    der.expect(serial, der.INTEGER, "serialNumber")
    der.ed25519_algorithm(inner_alg, "the certificate signature")
    der.ed25519_algorithm(outer_alg, "the certificate signature")
    if issuer.value != subject.value:
        raise Malformed("a trust anchor certificate must be self-signed (issuer == subject)")
    times = der.expect(validity, der.SEQUENCE, "validity").children()
    if len(times) != 2:
        raise Malformed("validity has two times")
    key = der.ed25519_spki(spki)
    _verify(key, tbs.encoding, der.signature_bits(signature), "the CA certificate")
    return AnchorKey(key, der.time_ms(times[0]), der.time_ms(times[1]), cert_der)


def _verify(key: bytes, message: bytes, signature: bytes, what: str) -> None:
    try:
        VerifyKey(key).verify(message, signature)
    except (BadSignatureError, ValueError):
        raise BadSignature(f"the signature of {what} does not verify") from None


def pem_certificates(text: str) -> tuple[list[bytes], str]:
    """DER bytes of every PEM ``CERTIFICATE`` block, and ``text`` with the blocks removed."""
    found: list[bytes] = []
    for body in _PEM.findall(text):
        try:
            found.append(base64.b64decode("".join(body.split()), validate=True))
        except (binascii.Error, ValueError):
            raise Malformed("a PEM certificate block is not valid base64") from None
    return found, _PEM.sub("\n", text)


def parse_fingerprint(text: str) -> bytes:
    """The 32-byte digest of ``sha256:<hex>`` (colons between hex pairs allowed)."""
    if not text.lower().startswith(FINGERPRINT_PREFIX):
        raise Malformed("a fingerprint starts with 'sha256:'")
    digits = text[len(FINGERPRINT_PREFIX) :].replace(":", "")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise Malformed(f"fingerprint {text!r} is not hexadecimal") from None
    if len(raw) != 32:
        raise Malformed(f"fingerprint {text!r} is not 32 bytes")
    return raw


def parse_raw_key(text: str) -> bytes:
    """A raw Ed25519 key given as ``ed25519:<base64>`` or bare base64 of 32 bytes."""
    body = text[len("ed25519:") :] if text.lower().startswith("ed25519:") else text
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"{text[:48]!r} is not base64") from None
    if len(raw) != KEY_BYTES or raw == bytes(KEY_BYTES):
        raise Malformed(f"{text[:48]!r} is not a 32-byte Ed25519 public key")
    try:
        VerifyKey(raw)
    except ValueError:
        raise Malformed(f"{text[:48]!r} is not an Ed25519 public key") from None
    return raw


@dataclass(frozen=True, slots=True)
class AnchorSet:
    """The CA keys an agent trusts, plus fingerprint pins not yet resolved to a key."""

    keys: tuple[AnchorKey, ...] = ()
    pins: tuple[bytes, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys or self.pins)

    def key_for(self, fingerprint: str) -> AnchorKey | None:
        """The anchor whose :func:`key_fingerprint` is ``fingerprint``, if any."""
        return next((k for k in self.keys if k.fingerprint == fingerprint), None)

    def adopt(self, ca_public_key: bytes, ca_cert_der: bytes = b"") -> AnchorSet:
        """Check the CA the manager presents at registration and return the anchors to use.

        * a presented key that is already an anchor: accepted as is;
        * otherwise it must match a pin (by key or certificate fingerprint) and is added --
          with the validity of ``ca_cert_der`` when given (which must then certify that key);
        * anything else raises :class:`AnchorMismatch` (an impostor manager, or the wrong
          anchor file). An empty set also raises: trust on first use is the caller's
          explicit lab mode, never a default.
        """
        if self.key_for(key_fingerprint(ca_public_key)) is not None:
            return self
        digests = {hashlib.sha256(ca_public_key).digest()}
        if ca_cert_der:
            digests.add(hashlib.sha256(ca_cert_der).digest())
        if not digests & set(self.pins):
            raise AnchorMismatch("the manager's CA matches no provisioned trust anchor")
        anchor = AnchorKey(ca_public_key)
        if ca_cert_der:
            anchor = parse_ca_certificate(ca_cert_der)
            if anchor.public_key != ca_public_key:
                raise AnchorMismatch("the manager's CA certificate does not hold its CA key")
        return replace(self, keys=(*self.keys, anchor))


def parse_anchor_file(text: str) -> AnchorSet:
    """Parse the text of a trust anchor file (see the module docstring).

    Raises :class:`Malformed` (or :class:`BadSignature` for a certificate whose
    self-signature fails) naming the offending entry; an empty file is an empty set.
    """
    certificates, rest = pem_certificates(text)
    keys = {a.public_key: a for a in map(parse_ca_certificate, certificates)}
    pins: list[bytes] = []
    for line in rest.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.lower().startswith(FINGERPRINT_PREFIX):
            pins.append(parse_fingerprint(entry))
        elif "-----" in entry:
            raise Malformed("a PEM block other than CERTIFICATE, or a broken one")
        else:
            raw = parse_raw_key(entry)
            keys.setdefault(raw, AnchorKey(raw))
    return AnchorSet(tuple(keys.values()), tuple(dict.fromkeys(pins)))
