"""The security suite's world: a real agent daemon (sandbox included) provisioned with the
test CA as its trust anchor (not in lab mode), the fake manager over the in-memory
transport, and operators whose keys the CA certified -- valid around the real clock, since
the daemon verifies against it.

:func:`sign` turns a task added with ``FakeManager.add_task`` into a signed one exactly as
the manager will: the manifest gets its signed facts (sequence, selector, times), is encoded
canonically and signed with ``crypto.signing.sign_manifest``; a test then changes exactly
one thing and expects the specific refusal.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import msgspec

from swarmdeploy.crypto.operator import RevocationList, ca_issuer, issue_revocation_list
from swarmdeploy.protocol.manifest import TaskManifest, encode_manifest
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig, make_rig
from tests.agent.fake_manager import ServedTask
from tests.agent.helpers import eventually
from tests.crypto import signing_rig

DAY_MS = 86_400_000
TAGS = ["field"]
S = TargetState


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
    """A daemon rig with the test CA as trust anchor, not in lab mode, tags :data:`TAGS`."""
    rig = await make_rig(tmp_path, **{"insecure_lab": False, **overrides})
    rig.anchors = signing_rig.anchors()
    state = rig.state()
    state.tags = list(TAGS)
    from swarmdeploy.agent.state import save_state

    save_state(rig.settings.state_path, state)
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


async def deploy(rig: Rig, task_id: str, state: TargetState, **kwargs: Any) -> ServedTask:
    """Add, sign (``signer``, ``sequence``, facts in ``sign_fields``), announce and wait for
    ``state``."""
    signer = kwargs.pop("signer", None) or operator()
    sequence = kwargs.pop("sequence")
    sign_fields = kwargs.pop("sign_fields", {})
    served = sign(rig.manager.add_task(task_id, **kwargs), signer, sequence=sequence, **sign_fields)
    await rig.manager.announce(TARGET, task_id)
    await rig.wait_state(task_id, state)
    return served


def reason(rig: Rig, task_id: str) -> str:
    """The reason of the task's latest report."""
    return rig.manager.reason(TARGET, task_id)


async def output_seen(rig: Rig, task_id: str, text: str) -> None:
    """Wait until ``text`` appeared in the task's output."""
    await eventually(lambda: text in rig.manager.outputs(TARGET, task_id), 10)


def replace_served(served: ServedTask, **changes: Any) -> ServedTask:
    """A copy of ``served`` with ``changes`` (e.g. other manifest bytes)."""
    return dataclasses.replace(served, **changes)
