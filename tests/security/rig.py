"""The security suite's world: a real agent daemon (sandbox included) provisioned with the
test CA as its trust anchor (not in lab mode), the fake manager over the in-memory
transport, and operators whose keys the CA certified -- valid around the real clock, since
the daemon verifies against it.

:func:`sign` turns a task added with ``FakeManager.add_task`` into a signed one exactly as
the manager will: the manifest gets its signed facts (sequence, selector, times), is encoded
canonically and signed with ``crypto.signing.sign_manifest``; a test then changes exactly
one thing and expects the specific refusal. Announcing, waiting for a state and reading
reasons and output are the daemon rig's own steps (``Rig.announce``, ``Rig.reason``,
``Rig.output_seen``).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import msgspec

from swarmdeploy.crypto.operator import (
    RevocationList,
    ca_issuer,
    issue_revocation_list,
    seed_signer,
)
from swarmdeploy.crypto.requests import RequestStatement, encode_statement, new_nonce, sign_request
from swarmdeploy.protocol.manifest import TaskManifest, encode_manifest
from swarmdeploy.protocol.messages import TerminalCommand
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig, make_rig
from tests.agent.fake_manager import ServedTask
from tests.crypto import signing_rig

DAY_MS = 86_400_000
TAGS = ["field"]


def now_ms() -> int:
    """The real clock (the daemon's)."""
    return time.time_ns() // 1_000_000


def operator(**overrides: Any) -> signing_rig.Operator:
    """A fresh operator key certified by the test CA, valid from a day ago for 30 days."""
    fields: dict[str, Any] = {
        "not_before_ms": now_ms() - DAY_MS,
        "not_after_ms": now_ms() + 30 * DAY_MS,
    }
    fields.update(overrides)
    return signing_rig.new_operator(**fields)


async def secured_rig(tmp_path: Path, **overrides: Any) -> Rig:
    """A daemon rig (not started) with the test CA as trust anchor, not in lab mode, tags
    :data:`TAGS`."""
    rig = await make_rig(tmp_path, **{"insecure_lab": False, **overrides})
    rig.anchors = signing_rig.anchors()
    state = rig.state()
    state.tags = list(TAGS)
    rig.save(state)
    return rig


def sign(
    served: ServedTask, signer: signing_rig.Operator, *, sequence: int, **fields: Any
) -> ServedTask:
    """Give ``served`` its signed facts (addressed to :data:`TARGET`, issued now, valid a
    day, ``fields`` override any) and sign it with ``signer``; returns it."""
    facts: dict[str, Any] = {
        "sequence": sequence,
        "target_ids": [TARGET],
        "created_at_ms": now_ms() - 1000,
        "expires_at_ms": now_ms() + DAY_MS,
    }
    facts.update(fields)
    manifest: TaskManifest = msgspec.structs.replace(served.manifest, **facts)
    served.manifest = manifest
    served.manifest_bytes = encode_manifest(manifest)
    served.signature = signer.sign(served.manifest_bytes)
    served.certificate = signer.certificate
    return served


def revocation_list(number: int, *, serials: frozenset[int] = frozenset()) -> bytes:
    """A revocation list of the test CA."""
    ca = signing_rig.authority()
    crl = RevocationList(
        issuer=ca_issuer(ca.public_key_raw),
        number=number,
        issued_at_ms=now_ms(),
        serials=serials,
    )
    return issue_revocation_list(crl, ca.sign)


async def deploy(
    rig: Rig,
    task_id: str,
    state: TargetState,
    *,
    sequence: int,
    signer: signing_rig.Operator | None = None,
    sign_fields: dict[str, Any] | None = None,
    **task: Any,
) -> ServedTask:
    """Add ``task_id`` (``task`` as for ``FakeManager.add_task``), sign it (by ``signer``,
    default a fresh :func:`operator`; facts in ``sign_fields``), announce it and wait for
    ``state``; returns the served task."""
    served = rig.manager.add_task(task_id, **task)
    sign(served, signer or operator(), sequence=sequence, **(sign_fields or {}))
    await rig.announce(task_id, state)
    return served


def signed_command(
    request_id: str,
    command: str,
    signer: signing_rig.Operator,
    *,
    target: str = TARGET,
    issued_at_ms: int | None = None,
    valid_ms: int = 60_000,
) -> TerminalCommand:
    """A ``terminal`` request signed by ``signer`` as the manager signs it (for ``target``,
    issued now unless ``issued_at_ms``, valid ``valid_ms``, a fresh nonce)."""
    issued = now_ms() - 1000 if issued_at_ms is None else issued_at_ms
    statement = RequestStatement(
        kind="terminal",
        request_id=request_id,
        target_id=target,
        command=command,
        nonce=new_nonce(),
        issued_at_ms=issued,
        expires_at_ms=issued + valid_ms,
    )
    signature = sign_request(statement, seed_signer(signer.seed), signer.certificate)
    return TerminalCommand(
        request_id=request_id,
        command=command,
        statement=base64.b64encode(encode_statement(statement)).decode(),
        signature=base64.b64encode(signature).decode(),
        certificate=signer.certificate.decode(),
    )
