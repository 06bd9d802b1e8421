"""The manager's certificate authority: an Ed25519 key that certifies device identity keys.

Seed 003 §4.3 step 7.ii: at registration the manager signs the device's Ed25519 "communication"
public key. We issue a standard X.509 v3 certificate (subject CN = target id, clientAuth EKU)
signed by a self-signed Ed25519 CA, so any X.509 tool can inspect it, and -- for peers that only
speak raw libsodium -- :meth:`CertificateAuthority.sign` gives a bare Ed25519 signature.

Note (reference/dependencies.md): ``cryptography``'s WebPKI verifier refuses Ed25519, so
:func:`verify_device_certificate` walks the (one-link) chain itself.

Needs the ``cryptography`` package (``manager`` extra). No I/O: keys and certificates go in and
out as PEM bytes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmdeploy.crypto.errors import CertificateError, InvalidKey

CA_VALIDITY_DAYS = 20 * 365
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


def load_ca(key_pem: bytes, cert_pem: bytes) -> CertificateAuthority:
    """Load a CA from PEM. Raises :class:`CertificateError` if either part is malformed or the
    key does not belong to the certificate."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"cannot load the CA: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CertificateError("the CA key is not an Ed25519 key")
    cert_public = cert.public_key()
    if not isinstance(cert_public, Ed25519PublicKey) or _raw_public(cert_public) != _raw_public(
        key.public_key()
    ):
        raise CertificateError("the CA key does not belong to the CA certificate")
    return CertificateAuthority(key=key, certificate=cert)


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
