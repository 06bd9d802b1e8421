"""Enrolling again after the manager deleted (revoked) this target (issue 13).

A deleted target's key is dropped by the manager; the agent notices when its link is refused
(``LinkState.AUTH_FAILED``) and records it in its state (``refused_at_ms``). Started again
with a registration token, :func:`retire` ends the old identity so that
:func:`~swarmdeploy.agent.registrator.ensure_registered` registers a new one:

1. the processes of the old identity's deployment are stopped (TERM, grace, KILL to the
   recorded groups) and its task directories removed -- a revoked device runs nothing of it;
2. the key files are deleted, so new keys are created;
3. a fresh state is saved under ``--id`` (or a newly generated id), keeping only the trust
   state (accepted sequence numbers and revocation list: rollback protection belongs to the
   device, not to its registration).

Without a token the agent keeps running and says once per refusal streak that it was revoked
and needs one (the daemon's link backs off between attempts; no tight loop).
"""

from __future__ import annotations

import asyncio
import logging
import time

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.fsutil import remove_tree
from swarmdeploy.agent.identity import CURVE_KEY_FILE, IDENTITY_KEY_FILE
from swarmdeploy.agent.state import AgentState, kill_leftovers, resume_plan, save_state

logger = logging.getLogger(__name__)

#: The one line a refused agent logs (with the target id).
REVOKED_MESSAGE = (
    "the manager refused this agent's key: target %s was deleted (revoked); start the agent"
    " with a new registration token (--token) to enrol again as a new identity"
)


def mark_refused(state: AgentState) -> bool:
    """Note that the manager refused this identity; True if that is new (log it then)."""
    if state.refused_at_ms:
        return False
    state.refused_at_ms = time.time_ns() // 1_000_000
    return True


def wants_reenrol(settings: AgentSettings, state: AgentState | None) -> bool:
    """Whether this start replaces a refused identity: registered, refused, token given."""
    return (
        state is not None
        and state.registration is not None
        and bool(state.refused_at_ms)
        and bool(settings.token)
    )


def retire(settings: AgentSettings, old: AgentState, new_id: str) -> AgentState:
    """End the refused identity ``old`` (module docstring) and return the saved fresh state
    for ``new_id``. Blocking; runs before the daemon starts."""
    logger.warning(
        "target %s was deleted (revoked) at the manager: enrolling again as a new identity"
        " (%s) with new keys and the given token",
        old.agent_id, new_id,
    )  # fmt: skip
    plan = resume_plan(old)
    if plan.kill_run_ids or plan.kill_groups:
        asyncio.run(kill_leftovers(plan, settings.stop_grace_s))
    remove_tree(settings.data_dir / "tasks")  # context.TASKS_DIR
    for name in (CURVE_KEY_FILE, IDENTITY_KEY_FILE):
        (settings.data_dir / name).unlink(missing_ok=True)
    state = AgentState(agent_id=new_id, trust=old.trust)
    save_state(settings.state_path, state)
    return state
