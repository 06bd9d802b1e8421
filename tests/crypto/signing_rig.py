"""A small world for signature tests: a real CA (``crypto/ca.py``, as the manager makes it),
the agent's anchors parsed from its ``ca.pem``, an operator key certified by the CA, and
manifests valid in every respect unless a test changes one thing."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto.anchors import AnchorSet, parse_anchor_file
from swarmdeploy.crypto.operator import (
    OperatorCertificate,
    ca_issuer,
    issue_operator_certificate,
    key_id,
    public_key_of,
    seed_signer,
)
from swarmdeploy.crypto.signing import Revocations, Target, VerifiedManifest, verify_task

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
TARGET = "robot-1"
TASK = "task-42"
PAYLOAD = b"the artifact's bytes"


@functools.cache
def authority() -> ca_mod.CertificateAuthority:
    """One CA for the whole test session (key generation is cheap, but keep it stable)."""
    now = dt.datetime.fromtimestamp(NOW_MS / 1000, dt.UTC) - dt.timedelta(days=30)
    return ca_mod.create_ca("swarmdeploy test CA", now=now)


@functools.cache
def anchors() -> AnchorSet:
    """The agent's anchors, parsed from the CA's PEM as ``--trust-anchor ca.pem`` would."""
    return parse_anchor_file(authority().cert_pem().decode())


def operator_cert(
    seed: bytes,
    *,
    ca: ca_mod.CertificateAuthority | None = None,
    **overrides: Any,
) -> bytes:
    """An operator certificate for ``seed`` issued by ``ca`` (default: :func:`authority`)."""
    issuer_ca = ca or authority()
    public = public_key_of(seed)
    fields: dict[str, Any] = {
        "serial": 7,
        "key_id": key_id(public),
        "name": "alice",
        "role": "operator",
        "public_key": public,
        "issuer": ca_issuer(issuer_ca.public_key_raw),
        "not_before_ms": NOW_MS - 10 * DAY_MS,
        "not_after_ms": NOW_MS + 365 * DAY_MS,
    }
    fields.update(overrides)
    return issue_operator_certificate(OperatorCertificate(**fields), issuer_ca.sign)


@dataclass(frozen=True)
class Operator:
    """An operator's seed and certificate."""

    seed: bytes
    certificate: bytes

    def sign(self, manifest: bytes) -> bytes:
        """A manifest signature with this operator's key (as ``sign_manifest`` makes it)."""
        from swarmdeploy.crypto.signing import sign_manifest

        return sign_manifest(manifest, seed_signer(self.seed), self.certificate)[0]


def new_operator(**overrides: Any) -> Operator:
    """A fresh operator key with a certificate (``overrides`` change certificate fields)."""
    seed = os.urandom(32)
    return Operator(seed, operator_cert(seed, **overrides))


def manifest_dict(**overrides: Any) -> dict[str, Any]:
    """A complete manifest as a dict (the fields issue 5 adds included)."""
    fields: dict[str, Any] = {
        "task_id": TASK,
        "kind": "deploy",
        "debug": False,
        "created_at_ms": NOW_MS - 60_000,
        "expires_at_ms": NOW_MS + DAY_MS,
        "sequence": 10,
        "target_ids": [TARGET, "robot-2"],
        "target_tags": ["lab"],
        "artifacts": [
            {
                "name": "payload.tar.gz",
                "sha256": hashlib.sha256(PAYLOAD).hexdigest(),
                "size_bytes": len(PAYLOAD),
                "chunk_bytes": 262144,
            }
        ],
        "install": ["tar xzf payload.tar.gz"],
        "run": ["./robot --serve"],
        "auto_restart": True,
        "sandbox": {"network": False, "uid": 65534, "gid": 65534},
    }
    fields.update(overrides)
    return fields


def manifest(**overrides: Any) -> bytes:
    """Canonical JSON of :func:`manifest_dict` (sorted keys, no whitespace)."""
    return msgspec.json.encode(manifest_dict(**overrides), order="sorted")


def verify(data: bytes, signature: bytes, certificate: bytes, **overrides: Any) -> VerifiedManifest:
    """:func:`verify_task` as the agent ``robot-1`` (tags ``field``) would call it now, with
    ``overrides`` for any keyword argument."""
    kwargs: dict[str, Any] = {
        "anchors": anchors(),
        "revoked": Revocations(),
        "target": Target(TARGET, frozenset({"field"})),
        "task_id": TASK,
        "now_ms": NOW_MS,
        "last_sequence": 9,
    }
    kwargs.update(overrides)
    return verify_task(data, signature, certificate, **kwargs)
