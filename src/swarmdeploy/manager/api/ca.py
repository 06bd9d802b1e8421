"""``/ca``: the deployment CA (issue 5): its certificate for provisioning, and an admin-only
export of its private key for offline keeping.

``GET /ca`` (any role) gives what devices are provisioned with: the certificate and its
fingerprints. ``POST /ca/export`` (``admin``) also gives the private key, encrypted with the
passphrase in the body (a body, not a header or query: it never reaches access logs) as
standard PKCS#8 (:meth:`~swarmdeploy.crypto.ca.CertificateAuthority.export_key_pem`). Every
export, and every refused attempt, is logged with who asked. The key derivation (~0.15 s)
runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from swarmdeploy.crypto.ca import CertificateAuthority
from swarmdeploy.manager.api.deps import ServicesDep, Viewer
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import ApiModel, Millis
from swarmdeploy.manager.errors import Forbidden
from swarmdeploy.manager.services.container import Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/ca", tags=["deployment CA"])

#: Shortest passphrase accepted for an export (the key every device trusts).
MIN_PASSPHRASE = 8
_FINGERPRINT = r"^sha256:[0-9a-f]{64}$"


class CaPublic(ApiModel):
    """The deployment CA as devices are provisioned with it."""

    certificate: str = Field(
        description="The self-signed Ed25519 CA certificate (PEM), as in DATA_DIR/ca.pem: the "
        "agents' trust anchor (`swarmdeploy agent --trust-anchor FILE`)."
    )
    fingerprint: str = Field(
        description="`sha256:<hex>` of the DER certificate (`openssl x509 -fingerprint "
        "-sha256`); a valid agent pin.",
        pattern=_FINGERPRINT,
    )
    key_fingerprint: str = Field(
        description="`sha256:<hex>` of the raw public key: the issuer named in operator "
        "certificates; also a valid agent pin.",
        pattern=_FINGERPRINT,
    )
    public_key: str = Field(description="The raw Ed25519 public key, base64 (`caPublicKey`).")
    subject: str = Field(description="The certificate's subject (RFC 4514).")
    not_before: Millis
    not_after: Millis


class CaExportCreate(ApiModel):
    """What an export is encrypted with."""

    passphrase: str = Field(
        min_length=MIN_PASSPHRASE,
        max_length=1024,
        description="Encrypts the exported private key; keep it apart from the file.",
    )


class CaExportPublic(CaPublic):
    """The CA with its private key, encrypted with the passphrase of the request."""

    private_key: str = Field(
        description="PKCS#8 PEM (`ENCRYPTED PRIVATE KEY`; PBES2: PBKDF2-HMAC-SHA256, 600000 "
        "rounds, AES-256-CBC). `openssl pkey` reads it; `swarmdeploy manager --import-ca` "
        "restores it."
    )


def ca_json(ca: CertificateAuthority) -> dict[str, Any]:
    """The API document of the CA (never its private key)."""
    cert = ca.certificate
    return {
        "certificate": ca.cert_pem().decode("ascii"),
        "fingerprint": ca.fingerprint,
        "keyFingerprint": ca.key_fingerprint,
        "publicKey": base64.b64encode(ca.public_key_raw).decode("ascii"),
        "subject": cert.subject.rfc4514_string(),
        "notBefore": int(cert.not_valid_before_utc.timestamp() * 1000),
        "notAfter": int(cert.not_valid_after_utc.timestamp() * 1000),
    }


@router.get("", response_model=CaPublic, responses=responses(401, 403))
async def get_ca(services: ServicesDep, _: Viewer) -> dict[str, Any]:
    """The CA certificate and its fingerprints, for provisioning devices."""
    return ca_json(services.keys.ca)


def ca_fingerprint(services: Services) -> str:
    """The CA's fingerprint (the audit target of exports)."""
    return str(services.keys.ca.fingerprint)


@router.post("/export", response_model=CaExportPublic, responses=responses(401, 403))
async def export_ca(
    body: CaExportCreate, services: ServicesDep, principal: Viewer, response: Response
) -> dict[str, Any]:
    """The CA with its private key encrypted with ``passphrase`` (``admin`` only; logged)."""
    if not principal.allows("admin"):
        log.warning("refused to export the CA private key to %s", principal.audit_name)
        await services.audit.append(principal, "ca.export_refused", ca_fingerprint(services))
        raise Forbidden("exporting the CA private key needs the admin role")
    ca = services.keys.ca
    pem = await asyncio.to_thread(ca.export_key_pem, body.passphrase)
    log.warning("CA private key %s exported by %s", ca.fingerprint, principal.audit_name)
    await services.audit.append(principal, "ca.export", ca_fingerprint(services))
    response.headers["Cache-Control"] = "no-store"
    return {**ca_json(ca), "privateKey": pem.decode("ascii")}
