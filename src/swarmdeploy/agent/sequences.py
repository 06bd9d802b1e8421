"""Sequence bookkeeping of accepted signed tasks, and recovery from a fast-forward attack
(``docs/security.md``).

A stolen operator key can sign a task with an absurdly high ``sequence``; once accepted,
every later legitimate task would be refused as a rollback -- even after the key is revoked.
So the agent remembers, per task kind, the highest sequence accepted from each signing key
(:class:`~swarmdeploy.agent.state.SignerMark`), and when a revocation list arrives it brings
``last_sequence`` back to the highest sequence an *unrevoked* key signed. Tasks of revoked
keys stay refused by the revocation itself; older tasks of unrevoked keys stay refused by
their own key's mark. Pure functions over :class:`~swarmdeploy.agent.state.TrustState`.
"""

from __future__ import annotations

from collections.abc import Collection

from swarmdeploy.agent.state import SignerMark, TrustState

#: Signing keys remembered per kind; the lowest marks go first (they cannot raise the
#: recomputed sequence above what the kept ones give).
MAX_SIGNERS = 256


def note_accepted(
    trust: TrustState, *, kind: str, task_id: str, sequence: int, key_id: str, serial: int
) -> None:
    """Record an accepted task's ``sequence`` as the newest of ``kind`` (if it is) and as
    the highest of its signing key."""
    if trust.last_sequence.get(kind, 0) <= sequence:
        trust.last_sequence[kind] = sequence
        trust.last_task[kind] = task_id
    marks = trust.signers.setdefault(kind, [])
    mark = next((m for m in marks if m.key_id == key_id), None)
    if mark is None:
        marks.append(SignerMark(key_id=key_id, serial=serial, sequence=sequence))
    else:
        mark.sequence = max(mark.sequence, sequence)
        mark.serial = serial
    if len(marks) > MAX_SIGNERS:
        marks.sort(key=lambda m: m.sequence, reverse=True)
        del marks[MAX_SIGNERS:]


def forget_revoked(
    trust: TrustState, *, serials: Collection[int], key_ids: Collection[str]
) -> list[str]:
    """Drop the marks of revoked keys and lower ``last_sequence`` of each kind to the
    highest unrevoked mark; returns the kinds whose sequence went down. Kinds without any
    mark (state from before marks were kept) are left as they are."""
    lowered = []
    for kind, marks in trust.signers.items():
        kept = [m for m in marks if m.serial not in serials and m.key_id not in key_ids]
        if len(kept) == len(marks):
            continue
        marks[:] = kept
        highest = max((m.sequence for m in kept), default=0)
        if highest < trust.last_sequence.get(kind, 0):
            trust.last_sequence[kind] = highest
            trust.last_task.pop(kind, None)
            lowered.append(kind)
    return lowered
