"""Running deployments whose signer was revoked (issue 9, ``docs/security.md``).

Revocation is checked on receipt and before every start; a deployment that is already
running when its signer's key is revoked would otherwise run on unnoticed until its next
start. :class:`RevokedSigners` re-verifies the running deployment whenever a *newer*
revocation list is accepted: if its signer is revoked it is marked (``security.
signer_revoked`` in ``hello``/``health``, ``signerRevoked`` on the target) and, when the
device's own policy says ``--on-revoked stop``, stopped at once (reported ``stopped`` with
the reason). Under ``keep`` (the default) it runs on, marked, and is refused at its next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from swarmdeploy.agent.apps import AppSupervisors
from swarmdeploy.agent.context import AgentContext
from swarmdeploy.agent.processor import TaskProcessor

logger = logging.getLogger(__name__)

POLICY_STOP = "stop"
STOP_REASON = "its signer's key was revoked (--on-revoked stop)"


class RevokedSigners:
    """Marks (and by policy stops) the running deployment of a revoked signer."""

    def __init__(
        self,
        ctx: AgentContext,
        deployments: AppSupervisors,
        processor: TaskProcessor,
        *,
        changed: Callable[[], None],
    ) -> None:
        self._ctx = ctx
        self._deployments = deployments
        self._processor = processor
        self._changed = changed
        self._marked: list[str] = []

    def report(self) -> list[str]:
        """Marked task ids that are still the current, unstopped deployment."""
        live = {dep.task_id for _, dep in self._ctx.state.deployments() if not dep.stopped}
        return [t for t in self._marked if t in live]

    async def check(self) -> None:
        """After a newer revocation list was accepted: mark every app's running release whose
        signer is revoked, and stop them under ``--on-revoked stop``."""
        self._marked = await asyncio.to_thread(self._deployments.signers_revoked)
        for task_id in self._marked:
            policy = self._ctx.settings.on_revoked
            logger.warning("deployment %s was signed by a revoked key (--on-revoked %s)",
                           task_id, policy)  # fmt: skip
            if policy == POLICY_STOP:
                await self._processor.stop(task_id, STOP_REASON)
        self._changed()
