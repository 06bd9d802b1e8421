"""Operator signing keys: certified by the CA, sealed at rest, exported only re-encrypted,
revocation lists that grow."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from swarmdeploy.crypto import keyenc
from swarmdeploy.crypto.anchors import parse_anchor_file
from swarmdeploy.crypto.ca import CertificateAuthority, create_ca
from swarmdeploy.crypto.operator import verify_operator_certificate, verify_revocation_list
from swarmdeploy.crypto.rejections import DecryptionFailed
from swarmdeploy.manager.errors import ConflictError, InvalidInput, NotFoundError
from swarmdeploy.manager.services.signing import OperatorKeys
from swarmdeploy.storage.sqlite import ScratchSqliteStorage
from tests.manager.services.conftest import FakeClock

FAST = keyenc.KdfParams(ops=1, mem_bytes=8192)
NOW = int(dt.datetime.now(dt.UTC).timestamp() * 1000)


@pytest.fixture
def ca() -> CertificateAuthority:
    # The CA's validity starts from NOW (fixed at import), not from when the test runs:
    # a long suite must not move the test's clock before the CA's "not before".
    return create_ca("test CA", now=dt.datetime.fromtimestamp(NOW / 1000, dt.UTC))


@pytest.fixture
async def keys(ca: CertificateAuthority) -> AsyncIterator[OperatorKeys]:
    storage = ScratchSqliteStorage()
    await storage.open()
    yield OperatorKeys(storage, ca=ca, secret=b"s" * 32, clock=FakeClock(NOW), export_kdf=FAST)
    await storage.close()


async def test_generated_key_is_certified_by_the_ca(
    keys: OperatorKeys, ca: CertificateAuthority
) -> None:
    record = await keys.generate(owner="k1", name="alice", role="operator")
    anchors = parse_anchor_file(ca.cert_pem().decode())
    cert = verify_operator_certificate(record.certificate, anchors, now_ms=NOW)
    assert (cert.key_id, cert.name, cert.role, cert.serial) == (
        record.id,
        "alice",
        "operator",
        record.serial,
    )
    assert (await keys.list(owner="k1")) == [record]


async def test_seed_is_sealed_and_not_stored_in_clear(keys: OperatorKeys) -> None:
    record = await keys.generate(owner="k1", name="alice", role="operator")
    seed = keys.seed_of(record)
    assert seed not in record.sealed_seed
    with pytest.raises(DecryptionFailed):
        keyenc.decrypt_seed(record.sealed_seed.decode(), key=b"x" * 32)


async def test_export_is_encrypted_with_the_passphrase_and_imports_back(
    keys: OperatorKeys, ca: CertificateAuthority
) -> None:
    record = await keys.generate(owner="k1", name="alice", role="operator")
    armored = await keys.export_private(record.id, "correct horse")
    assert keyenc.decrypt_seed(armored, passphrase="correct horse") == keys.seed_of(record)
    with pytest.raises(ConflictError):
        await keys.import_key(armored, "correct horse", owner="k2", name="bob", role="admin")
    storage = ScratchSqliteStorage()
    await storage.open()
    other = OperatorKeys(storage, ca=ca, secret=b"t" * 32, clock=FakeClock(NOW))
    imported = await other.import_key(armored, "correct horse", owner="k2", name="b", role="admin")
    assert imported.id == record.id and imported.role == "admin"
    await storage.close()


async def test_import_with_wrong_passphrase_or_garbage_is_invalid(keys: OperatorKeys) -> None:
    armored = keyenc.encrypt_with_passphrase(b"\x01" * 32, "right", kdf=FAST)
    with pytest.raises(InvalidInput):
        await keys.import_key(armored, "wrong", owner="k", name="n", role="operator")
    with pytest.raises(InvalidInput):
        await keys.import_key("not a key", "right", owner="k", name="n", role="operator")


async def test_export_without_passphrase_or_of_unknown_key_is_refused(keys: OperatorKeys) -> None:
    record = await keys.generate(owner="k1", name="alice", role="operator")
    with pytest.raises(InvalidInput):
        await keys.export_private(record.id, "")
    with pytest.raises(NotFoundError):
        await keys.export_private("0" * 32, "x")


async def test_revocation_lists_name_revoked_keys_with_growing_numbers(
    keys: OperatorKeys, ca: CertificateAuthority
) -> None:
    anchors = parse_anchor_file(ca.cert_pem().decode())
    first = await keys.generate(owner="k1", name="alice", role="operator")
    second = await keys.generate(owner="k2", name="bob", role="operator")
    empty = verify_revocation_list(await keys.revocation_list(), anchors, last_number=0)
    assert not empty.key_ids
    await keys.revoke(first.id)
    await keys.revoke(first.id)
    one = verify_revocation_list(await keys.revocation_list(), anchors, last_number=empty.number)
    assert one.key_ids == {first.id} and one.serials == {first.serial}
    assert one.number > empty.number
    await keys.revoke(second.id)
    two = verify_revocation_list(await keys.revocation_list(), anchors, last_number=one.number)
    assert two.key_ids == {first.id, second.id} and two.number > one.number
    with pytest.raises(NotFoundError):
        await keys.revoke("0" * 32)
