"""Signing terminal commands with the key of the operator who sends them (issue 9).

The manager holds operator signing keys sealed (ADR 0004) and signs for the authenticated
caller, exactly as it signs task manifests (:class:`~.task_signing.TaskSigner`): the
caller's newest unrevoked key -- generated on first use for a caller that never had one,
refused (403) for one whose keys are all revoked. The statement
(:class:`~swarmdeploy.crypto.requests.RequestStatement`) names the target, the command, the
request id, issue time, expiry (the request's own, ``--terminal-expiry-s``) and a random
nonce; agents verify it before running anything and refuse replays.

A row written into the ``requests`` table by someone who holds the database but not the
manager's ``secret.key`` carries no valid signature: agents refuse it (``unsigned``,
``bad_signature``), and nothing runs.
"""

from __future__ import annotations

import base64
import uuid

from swarmdeploy.crypto.operator import seed_signer
from swarmdeploy.crypto.requests import (
    RequestStatement,
    encode_statement,
    new_nonce,
    sign_request,
)
from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.dispatch import CommandRequest
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.signing import OperatorKeys
from swarmdeploy.manager.services.task_signing import TaskSigner


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class RequestSigner:
    """Builds signed :class:`CommandRequest` s for the calling operator."""

    def __init__(
        self, *, signer: TaskSigner, keys: OperatorKeys, clock: Clock, validity_ms: int
    ) -> None:
        self._signer = signer
        self._keys = keys
        self._clock = clock
        self._validity_ms = validity_ms

    async def terminal(self, target_id: str, command: str, by: Principal) -> CommandRequest:
        """A terminal command for ``target_id`` signed with ``by``'s key.
        :class:`~swarmdeploy.manager.errors.Forbidden` when that key is revoked."""
        key = await self._signer.key_of(by)
        await self._signer.key_by_id(key.id)  # revoked meanwhile
        now = self._clock()
        request_id = uuid.uuid4().hex
        statement = RequestStatement(
            kind="terminal",
            request_id=request_id,
            target_id=target_id,
            command=command,
            nonce=new_nonce(),
            issued_at_ms=now,
            expires_at_ms=now + self._validity_ms,
        )
        signature = sign_request(statement, seed_signer(self._keys.seed_of(key)), key.certificate)
        return CommandRequest(
            command,
            by.audit_name,
            id=request_id,
            statement=_b64(encode_statement(statement)),
            signature=_b64(signature),
            certificate=key.certificate.decode("ascii"),
            key_id=key.id,
        )
