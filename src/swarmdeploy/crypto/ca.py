"""The manager's certificate authority: an Ed25519 key that certifies device identity keys.

Seed 003 §4.3 step 7.ii: at registration the manager signs the device's Ed25519 "communication"
public key. We issue a standard X.509 v3 certificate (subject CN = target id, clientAuth EKU)
signed by a self-signed Ed25519 CA, so any X.509 tool can inspect it, and -- for peers that only
speak raw libsodium -- :meth:`CertificateAuthority.sign` gives a bare Ed25519 signature.

Note (reference/dependencies.md): ``cryptography``'s WebPKI verifier refuses Ed25519, so
:func:`verify_device_certificate` walks the (one-link) chain itself.

Custody (issue 5): :func:`check_ca_certificate` decides whether a certificate may be a
deployment CA (also what agents will accept), :func:`load_ca` reads plain or encrypted PKCS#8
for an import, :func:`ca_from_seed` rebuilds the CA from the seed kept encrypted at rest
(:mod:`swarmdeploy.crypto.keyenc`), and :meth:`CertificateAuthority.export_key_pem` encrypts
the key for offline keeping as standard PKCS#8 (PBES2: PBKDF2-HMAC-SHA256 with
``EXPORT_PBKDF2_ITERATIONS`` rounds, AES-256-CBC) that OpenSSL reads too. ``cryptography``'s
own PKCS#8 encryption uses 2048 PBKDF2 rounds, far too few for the key every device trusts.

Needs the ``cryptography`` package (``manager`` extra). No I/O: keys and certificates go in and
out as PEM bytes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import secrets

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmdeploy.crypto import anchors
from swarmdeploy.crypto.errors import CertificateError, CryptoError, InvalidKey

CA_VALIDITY_DAYS = 20 * 365
#: PBKDF2-HMAC-SHA256 rounds of an exported CA key (OWASP 2023; ~0.15 s here).
EXPORT_PBKDF2_ITERATIONS = 600_000
DEVICE_VALIDITY_DAYS = 5 * 365
_ORG = "swarmdeploy"


def parse_identity_key(text: str) -> bytes:
    """Decode a device's Ed25519 public key given as standard base64 (32 raw bytes).

    Raises :class:`InvalidKey` if it is not base64 of exactly 32 bytes or not a usable key.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey("the identity key must be base64 of a 32-byte Ed25519 key") from exc
    _load_identity(raw)
    return raw


def _load_identity(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32 or raw == bytes(32):
        raise InvalidKey("the identity key must be base64 of a 32-byte Ed25519 key")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise InvalidKey("the identity key is not a valid Ed25519 public key") from exc


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    """An Ed25519 CA key with its self-signed certificate."""

    key: Ed25519PrivateKey = dataclasses.field(repr=False)
    certificate: x509.Certificate

    @property
    def public_key_raw(self) -> bytes:
        """The CA's raw 32-byte Ed25519 public key."""
        return _raw_public(self.key.public_key())

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (store it with mode 0600)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (public; agents use it as a trust anchor)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def seed(self) -> bytes:
        """The raw 32-byte Ed25519 private key (what :mod:`~swarmdeploy.crypto.keyenc`
        encrypts at rest). Secret."""
        return self.key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the DER certificate (``openssl x509 -fingerprint -sha256``)."""
        der_bytes = self.certificate.public_bytes(serialization.Encoding.DER)
        return anchors.certificate_fingerprint(der_bytes)

    @property
    def key_fingerprint(self) -> str:
        """``sha256:<hex>`` of the raw public key (how operator certificates name the CA)."""
        return anchors.key_fingerprint(self.public_key_raw)

    def export_key_pem(
        self, passphrase: str, *, iterations: int = EXPORT_PBKDF2_ITERATIONS
    ) -> bytes:
        """The private key as PKCS#8 PEM encrypted with ``passphrase`` (PBES2:
        PBKDF2-HMAC-SHA256 with ``iterations`` rounds, AES-256-CBC); ``openssl pkey`` and
        :func:`load_ca` read it. Raises :class:`ValueError` for an empty passphrase."""
        if not passphrase:
            raise ValueError("the passphrase must not be empty")
        plain = self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return _pbes2_pem(plain, passphrase.encode("utf-8"), iterations)

    def sign(self, data: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature over ``data``."""
        return self.key.sign(data)

    def issue_device_certificate(
        self, device_id: str, identity_key: bytes, *, now: dt.datetime
    ) -> bytes:
        """Certify ``identity_key`` (raw Ed25519) as the key of ``device_id``; returns PEM.

        Raises :class:`InvalidKey` for a malformed key. The certificate is valid from ``now``
        (minus five minutes of clock skew) for ``DEVICE_VALIDITY_DAYS`` and carries the
        clientAuth extended key usage.
        """
        device_key = _load_identity(identity_key)
        ca_public = self.key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(device_id))
            .issuer_name(self.certificate.subject)
            .public_key(device_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=DEVICE_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(device_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .sign(self.key, algorithm=None)
        )
        return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def create_ca(common_name: str, *, now: dt.datetime) -> CertificateAuthority:
    """A new CA: fresh Ed25519 key and a self-signed certificate valid for 20 years."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, algorithm=None)
    )
    return CertificateAuthority(key=key, certificate=cert)


def load_ca(
    key_pem: bytes, cert_pem: bytes, *, password: bytes | None = None
) -> CertificateAuthority:
    """Load a CA from PEM: ``key_pem`` is PKCS#8 (encrypted with ``password`` if given).

    Raises :class:`CertificateError` if either part is malformed, the password is missing
    or wrong, the key is not Ed25519 or does not belong to the certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"the CA certificate is not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise CertificateError(f"cannot load the CA key: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"cannot load the CA key (wrong passphrase?): {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CertificateError("the CA key is not an Ed25519 key")
    return _pair(key, cert)


def ca_from_seed(seed: bytes, cert_pem: bytes) -> CertificateAuthority:
    """The CA of a raw 32-byte Ed25519 ``seed`` and its certificate. Raises
    :class:`CertificateError` for a malformed certificate or one of another key."""
    if len(seed) != 32:
        raise CertificateError("an Ed25519 seed has 32 bytes")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"the CA certificate is not a PEM certificate: {exc}") from None
    return _pair(Ed25519PrivateKey.from_private_bytes(seed), cert)


def _pair(key: Ed25519PrivateKey, cert: x509.Certificate) -> CertificateAuthority:
    cert_public = cert.public_key()
    if not isinstance(cert_public, Ed25519PublicKey) or _raw_public(cert_public) != _raw_public(
        key.public_key()
    ):
        raise CertificateError("the CA key does not belong to the CA certificate")
    return CertificateAuthority(key=key, certificate=cert)


def check_ca_certificate(cert: x509.Certificate, *, now: dt.datetime) -> None:
    """Check that ``cert`` can serve as the deployment CA: a self-signed Ed25519 certificate
    that agents can read (``crypto.anchors``' strict DER walk), with ``cA`` basic
    constraints, the keyCertSign usage if it has a key usage, and valid at ``now``.

    Raises :class:`CertificateError` naming the first problem."""
    if not isinstance(cert.public_key(), Ed25519PublicKey):
        raise CertificateError("the CA certificate does not hold an Ed25519 key")
    try:
        anchors.parse_ca_certificate(cert.public_bytes(serialization.Encoding.DER))
    except CryptoError as exc:
        raise CertificateError(f"agents cannot use this CA certificate: {exc}") from None
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateError("the certificate is not a CA (no basic constraints)") from None
    if not basic.ca:
        raise CertificateError("the certificate is not a CA (basic constraints cA is false)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise CertificateError("the CA certificate's key usage lacks keyCertSign")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError(
            f"the CA certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )


def verify_device_certificate(cert_pem: bytes, ca_pem: bytes, *, now: dt.datetime) -> str:
    """Check that ``cert_pem`` was issued by the CA in ``ca_pem``, is valid at ``now`` and is
    a clientAuth end-entity certificate; return its subject common name (the target id).

    Raises :class:`CertificateError` otherwise.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateError(f"the certificate does not verify: {exc}") from exc
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError("the certificate is not valid at this time")
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError(f"the certificate lacks an extension: {exc}") from exc
    if basic.ca or ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise CertificateError("not a device (clientAuth, non-CA) certificate")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise CertificateError("the certificate has no single common name")
    return str(names[0].value)


# -- PKCS#8 PBES2 (RFC 8018) encoding of an exported key ----------------------------------
_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_HMAC_SHA256 = "1.2.840.113549.2.9"
_AES256_CBC = "2.16.840.1.101.3.4.1.42"


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _pbes2_pem(plain_der: bytes, password: bytes, iterations: int) -> bytes:
    """EncryptedPrivateKeyInfo (PEM) of the PKCS#8 ``plain_der``."""
    if iterations < 1:
        raise ValueError("PBKDF2 needs at least one iteration")
    salt, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(password)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain_der) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padded) + encryptor.finalize()
    kdf = _seq(
        _oid(_PBKDF2),
        _seq(_tlv(0x04, salt), _int(iterations), _seq(_oid(_HMAC_SHA256), _tlv(0x05, b""))),
    )
    scheme = _seq(_oid(_AES256_CBC), _tlv(0x04, iv))
    info = _seq(_seq(_oid(_PBES2), _seq(kdf, scheme)), _tlv(0x04, sealed))
    body = base64.b64encode(info).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = "\n".join(["-----BEGIN ENCRYPTED PRIVATE KEY-----", *lines])
    return (text + "\n-----END ENCRYPTED PRIVATE KEY-----\n").encode("ascii")
