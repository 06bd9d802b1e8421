"""Signed operator requests (``crypto/requests.py``): one canonical form, a bounded time
window, and a signature that is valid for nothing but a request."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from swarmdeploy.crypto.operator import seed_signer
from swarmdeploy.crypto.rejections import BadSignature, Malformed, RequestExpired
from swarmdeploy.crypto.requests import (
    MAX_VALIDITY_MS,
    REQUEST_DOMAIN,
    RequestStatement,
    VerifiedRequest,
    encode_statement,
    sign_request,
    verify_request,
)
from swarmdeploy.crypto.signing import MANIFEST_DOMAIN, Revocations
from tests.crypto import signing_rig
from tests.crypto.signing_rig import NOW_MS, TARGET


def statement(**overrides: Any) -> RequestStatement:
    fields: dict[str, Any] = {
        "kind": "terminal",
        "request_id": "r1",
        "target_id": TARGET,
        "command": "uptime",
        "nonce": "0" * 32,
        "issued_at_ms": NOW_MS - 1000,
        "expires_at_ms": NOW_MS + 60_000,
    }
    fields.update(overrides)
    return RequestStatement(**fields)


def verify(data: bytes, signature: bytes, certificate: bytes, **overrides: Any) -> VerifiedRequest:
    kwargs: dict[str, Any] = {
        "anchors": signing_rig.anchors(),
        "revoked": Revocations(),
        "target_id": TARGET,
        "request_id": "r1",
        "kind": "terminal",
        "now_ms": NOW_MS,
    }
    kwargs.update(overrides)
    return verify_request(data, signature, certificate, **kwargs)


def test_signed_request_verifies_and_names_its_signer() -> None:
    alice = signing_rig.new_operator()
    signature = sign_request(statement(), seed_signer(alice.seed), alice.certificate)
    verified = verify(encode_statement(statement()), signature, alice.certificate)
    assert verified.statement.command == "uptime" and verified.signer.name == "alice"


def test_manifest_signature_over_the_same_bytes_is_no_request_signature() -> None:
    alice = signing_rig.new_operator()
    data = encode_statement(statement())
    as_manifest = seed_signer(alice.seed)(MANIFEST_DOMAIN + data)
    with pytest.raises(BadSignature):
        verify(data, as_manifest, alice.certificate)
    assert seed_signer(alice.seed)(REQUEST_DOMAIN + data) != as_manifest


def test_non_canonical_statement_is_malformed() -> None:
    alice = signing_rig.new_operator()
    data = msgspec.json.encode(statement())  # field order of the struct, not sorted
    assert data != encode_statement(statement())
    signature = seed_signer(alice.seed)(REQUEST_DOMAIN + data)
    with pytest.raises(Malformed):
        verify(data, signature, alice.certificate)


def test_validity_longer_than_the_bound_is_refused_at_signing() -> None:
    alice = signing_rig.new_operator()
    long = statement(expires_at_ms=NOW_MS + MAX_VALIDITY_MS)
    with pytest.raises(Malformed):
        sign_request(long, seed_signer(alice.seed), alice.certificate)


def test_request_issued_in_the_future_is_refused() -> None:
    alice = signing_rig.new_operator()
    future = statement(issued_at_ms=NOW_MS + 3_600_000, expires_at_ms=NOW_MS + 3_660_000)
    signature = sign_request(future, seed_signer(alice.seed), alice.certificate)
    with pytest.raises(RequestExpired):
        verify(encode_statement(future), signature, alice.certificate)
