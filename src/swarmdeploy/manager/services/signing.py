"""Operator signing keys (issue 5, CRD-72/76; ADR 0004): generate, import, export, revoke.

Every key is an Ed25519 key certified by the manager's CA with a compact operator
certificate (:mod:`swarmdeploy.crypto.operator`). Its seed is stored sealed
(:func:`~swarmdeploy.crypto.keyenc.encrypt_with_key`) under a key derived from the manager's
secret store (``DATA_DIR/secret.key``), so a database dump alone does not give it away. A
private key leaves the manager only re-encrypted with a passphrase chosen by the admin who
exports it. Revoking a key makes a new CA-signed revocation list (:meth:`revocation_list`);
its ``number`` is one more than the count of revoked keys, so it grows with every revocation
and never goes back (keys are never un-revoked).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable

from swarmdeploy.crypto import keyenc
from swarmdeploy.crypto.ca import CertificateAuthority
from swarmdeploy.crypto.errors import CryptoError, InvalidKey
from swarmdeploy.crypto.operator import (
    OperatorCertificate,
    RevocationList,
    ca_issuer,
    issue_operator_certificate,
    issue_revocation_list,
    key_id,
    public_key_of,
)
from swarmdeploy.crypto.rejections import DecryptionFailed
from swarmdeploy.manager.errors import ConflictError, InvalidInput, NotFoundError
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict
from swarmdeploy.storage.records import OperatorKeyRecord, Role

log = logging.getLogger(__name__)

SEAL_LABEL = "secret.key/operator-keys"
#: How long an operator certificate is valid (two years).
DEFAULT_VALIDITY_MS = 2 * 365 * 24 * 3600 * 1000
_SEAL_CONTEXT = b"swarmdeploy operator-key sealing v1"


def seal_key(secret: bytes) -> bytes:
    """The 32-byte key sealing operator seeds, derived from the manager's secret."""
    return hmac.new(secret, _SEAL_CONTEXT, hashlib.sha256).digest()


class OperatorKeys:
    """Operator signing keys in storage, certified by ``ca``.

    ``owner`` is who a key signs for: the API key id of the caller (or ``via:name`` for
    the bootstrap admin key and OIDC users). ``clock`` returns milliseconds since the epoch.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        ca: CertificateAuthority,
        secret: bytes,
        clock: Callable[[], int],
        validity_ms: int = DEFAULT_VALIDITY_MS,
        export_kdf: keyenc.KdfParams = keyenc.DEFAULT_KDF,
    ) -> None:
        self._storage = storage
        self._ca = ca
        self._seal = seal_key(secret)
        self._clock = clock
        self._validity_ms = validity_ms
        self._export_kdf = export_kdf
        self._on_revoked: list[Callable[[], Awaitable[None]]] = []

    def add_revocation_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call ``listener`` after every revocation (the agent link pushes the new list)."""
        self._on_revoked.append(listener)

    async def generate(self, *, owner: str, name: str, role: Role) -> OperatorKeyRecord:
        """A new certified key for ``owner``, named ``name``, with ``role``."""
        return await self._store(secrets.token_bytes(32), owner=owner, name=name, role=role)

    async def import_key(
        self, armored: str, passphrase: str, *, owner: str, name: str, role: Role
    ) -> OperatorKeyRecord:
        """Import an armored private key encrypted with ``passphrase`` and certify it.

        :class:`InvalidInput` for text that is not an encrypted key or a wrong passphrase,
        :class:`ConflictError` for a key the manager holds already."""
        try:
            seed = keyenc.decrypt_seed(armored, passphrase=passphrase)
        except (InvalidKey, DecryptionFailed) as exc:
            raise InvalidInput(f"cannot import the key: {exc}", path="$.privateKey") from None
        return await self._store(seed, owner=owner, name=name, role=role)

    async def _store(self, seed: bytes, *, owner: str, name: str, role: Role) -> OperatorKeyRecord:
        public = public_key_of(seed)
        now = self._clock()
        cert = OperatorCertificate(
            serial=secrets.randbelow(2**62) + 1,
            key_id=key_id(public),
            name=name,
            role=role,
            public_key=public,
            issuer=ca_issuer(self._ca.public_key_raw),
            not_before_ms=now,
            not_after_ms=now + self._validity_ms,
        )
        sealed = keyenc.encrypt_with_key(
            seed, self._seal, key_label=SEAL_LABEL, comment=f"operator key {cert.key_id}"
        )
        record = OperatorKeyRecord(
            id=cert.key_id,
            name=name,
            owner=owner,
            role=role,
            public_key=public,
            certificate=issue_operator_certificate(cert, self._ca.sign),
            sealed_seed=sealed.encode(),
            serial=cert.serial,
            created_at=now,
        )
        try:
            await self._storage.add_operator_key(record)
        except Conflict:
            raise ConflictError(f"operator key {record.id} exists") from None
        log.info("operator key %s (%s) certified for %s", record.id, name, owner)
        return record

    async def get(self, key_id_: str) -> OperatorKeyRecord:
        """The key; :class:`NotFoundError`."""
        record = await self._storage.get_operator_key(key_id_)
        if record is None:
            raise NotFoundError(f"operator key {key_id_!r} not found")
        return record

    async def list(self, *, owner: str | None = None) -> list[OperatorKeyRecord]:
        """Keys (of ``owner``), oldest first."""
        return await self._storage.list_operator_keys(owner=owner)

    async def export_private(self, key_id_: str, passphrase: str) -> str:
        """The key's seed re-encrypted with ``passphrase`` (armored text). The caller must
        have checked that the requester is an admin. :class:`InvalidInput` for an empty
        passphrase."""
        if not passphrase:
            raise InvalidInput("a passphrase is needed to export a private key", path=None)
        seed = self.seed_of(await self.get(key_id_))
        return keyenc.encrypt_with_passphrase(
            seed, passphrase, comment=f"swarmdeploy operator key {key_id_}", kdf=self._export_kdf
        )

    def seed_of(self, record: OperatorKeyRecord) -> bytes:
        """The unsealed seed of a stored key (for signing)."""
        return keyenc.decrypt_seed(record.sealed_seed.decode(), key=self._seal)

    async def revoke(self, key_id_: str) -> OperatorKeyRecord:
        """Revoke the key (idempotent); :class:`NotFoundError`."""
        await self.get(key_id_)
        record = await self._storage.revoke_operator_key(key_id_, self._clock())
        log.warning("operator key %s (%s) revoked", record.id, record.name)
        await self._revoked()
        return record

    async def revoke_owner(self, owner: str) -> builtins.list[OperatorKeyRecord]:
        """Revoke every unrevoked key of ``owner`` (revoking an operator: its API key is
        deleted with it); returns the keys revoked now. Agents hear of it at once."""
        revoked: builtins.list[OperatorKeyRecord] = []
        for key in await self.list(owner=owner):
            if key.revoked_at is None:
                revoked.append(await self._storage.revoke_operator_key(key.id, self._clock()))
                log.warning("operator key %s (%s) of %s revoked", key.id, key.name, owner)
        if revoked:
            await self._revoked()
        return revoked

    async def _revoked(self) -> None:
        for listener in self._on_revoked:
            try:
                await listener()
            except Exception:  # top of the listener loop: the revocation is stored
                log.exception("a revocation listener failed")

    async def revocation_list(self) -> bytes:
        """The current CA-signed revocation list (wire bytes), listing every revoked key."""
        revoked = [k for k in await self._storage.list_operator_keys() if k.revoked_at]
        crl = RevocationList(
            issuer=ca_issuer(self._ca.public_key_raw),
            number=1 + len(revoked),
            issued_at_ms=self._clock(),
            serials=frozenset(k.serial for k in revoked),
            key_ids=frozenset(k.id for k in revoked),
        )
        return issue_revocation_list(crl, self._ca.sign)

    async def revocations_for_agents(self) -> bytes:
        """What ``welcome`` carries: :meth:`revocation_list` once a key is revoked, else
        empty bytes (nothing to tell)."""
        if not any(k.revoked_at for k in await self._storage.list_operator_keys()):
            return b""
        try:
            return await self.revocation_list()
        except CryptoError as exc:  # too many revoked keys: agents keep the list they have
            log.error("the revocation list cannot be issued: %s", exc)
            return b""
