"""Signed operator requests on the device: a terminal command runs only when an operator
signed it for this target, now, once (issue 9, ``docs/security.md`` "Terminal").

:meth:`RequestTrust.accept_terminal` verifies a ``terminal`` message with
:func:`swarmdeploy.crypto.requests.verify_request` against the same anchors and revocation
list as task manifests (:class:`~swarmdeploy.agent.trust.Verifier`), then refuses a replay:
the statement's nonce must not be among those carried out within their window. The nonce
is persisted (``AgentState.request_nonces``) *before* the command starts, so a replay after
an agent restart or a crash is refused too; a nonce is forgotten once its statement has
expired, since an expired statement is refused anyway. The command run is the one read from
the verified statement, never the message's plain ``command`` field.

An agent with anchors refuses unsigned commands (``unsigned``); without anchors it refuses
every command (``no_trust_anchor``) unless ``--insecure-lab``, which accepts unsigned ones
with a warning. Every refusal is a :class:`~swarmdeploy.agent.errors.TaskRefused` with a
stable code.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass

from swarmdeploy.agent.errors import TaskRefused
from swarmdeploy.agent.state import AgentState
from swarmdeploy.agent.trust import NO_ANCHOR_REASON, Verifier
from swarmdeploy.crypto.rejections import VerificationError
from swarmdeploy.protocol.messages import TerminalCommand

logger = logging.getLogger(__name__)

#: Nonces remembered at most; beyond that (never in practice: each needs an operator's
#: signature and the manager bounds open requests) new commands are refused, not old
#: nonces forgotten.
MAX_NONCES = 4096


@dataclass(frozen=True, slots=True)
class Authorised:
    """A terminal command to run and who signed it ("" when unsigned, insecure lab)."""

    command: str
    signer: str
    key_id: str = ""


def claimed_key_id(certificate: str) -> str:
    """The key id a certificate names, unverified ("" if unreadable): only to label the
    log line of a refusal for its (claimed) operator."""
    if not certificate:
        return ""
    from swarmdeploy.crypto.operator import unverified_certificate

    try:
        return unverified_certificate(certificate.encode("utf-8")).key_id
    except VerificationError:
        return ""


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TaskRefused("malformed", f"the {what} is not base64") from None


class RequestTrust:
    """Verifies signed operator requests and remembers their nonces (module docstring)."""

    def __init__(self, verifier: Verifier, state: AgentState, save: Callable[[], None]) -> None:
        self._verifier = verifier
        self._state = state
        self._save = save

    def accept_terminal(self, msg: TerminalCommand) -> Authorised:
        """Verify ``msg`` and record its nonce; returns what to run. Raises
        :class:`TaskRefused` with the failed check's code (nothing is recorded then)."""
        if not (msg.statement or msg.signature or msg.certificate):
            return self._unsigned(msg.command)
        anchors = self._verifier.verifying_anchors
        if not anchors:
            raise TaskRefused("no_trust_anchor", NO_ANCHOR_REASON)
        from swarmdeploy.crypto.requests import verify_request

        data = _b64(msg.statement, "statement")
        signature = _b64(msg.signature, "signature")
        now = self._verifier.now_ms()
        try:
            verified = verify_request(
                data,
                signature,
                msg.certificate.encode("utf-8"),
                anchors=anchors,
                revoked=self._verifier.revocations(),
                target_id=self._state.agent_id,
                request_id=msg.request_id,
                kind="terminal",
                now_ms=now,
            )
        except VerificationError as exc:
            raise TaskRefused(exc.code, exc.message) from None
        statement = verified.statement
        self._remember(statement.nonce, statement.expires_at_ms, now)
        return Authorised(statement.command, verified.signer.name, verified.signer.key_id)

    def _unsigned(self, command: str) -> Authorised:
        if self._verifier.insecure_lab:
            logger.warning("unsigned terminal command accepted (insecure lab mode)")
            return Authorised(command, "")
        if not self._verifier.anchors:
            raise TaskRefused("no_trust_anchor", NO_ANCHOR_REASON)
        raise TaskRefused("unsigned", "terminal commands must be signed by an operator")

    def _remember(self, nonce: str, expires_at_ms: int, now_ms: int) -> None:
        """Refuse a nonce seen before (``replayed``); else persist it with its expiry."""
        nonces = self._state.request_nonces
        for old in [n for n, until in nonces.items() if until < now_ms]:
            del nonces[old]
        if nonce in nonces:
            raise TaskRefused("replayed", "this signed request was carried out before")
        if len(nonces) >= MAX_NONCES:
            raise TaskRefused("busy", f"{MAX_NONCES} signed requests are remembered already")
        nonces[nonce] = expires_at_ms
        self._save()
