"""What the parts of the running daemon share: settings, persisted state, reporting, output.

One :class:`AgentContext` is built by :class:`~swarmdeploy.agent.daemon.Daemon` and handed to
the task processor, the deployment supervisor, the terminal and the request handler. It is
not a global: each part receives it explicitly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from swarmdeploy.agent.collector import ResponseCollector
from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.fsutil import DiskReserve
from swarmdeploy.agent.output import SPLIT_MARKER
from swarmdeploy.agent.reports import Send, StateReporter
from swarmdeploy.agent.resources import (
    LOW_DISK_CAP_BYTES,
    LOW_DISK_SHARE,
    MARGIN_CAP_BYTES,
    MARGIN_SHARE,
    DiskPolicy,
    scaled_disk_bytes,
)
from swarmdeploy.agent.runner import SequenceConfig
from swarmdeploy.agent.state import AgentState, save_state
from swarmdeploy.agent.supervise import SupervisionConfig
from swarmdeploy.protocol.messages import MAX_OUTPUT_CHARS

#: Cap of one captured line in bytes, so that a split piece plus its marker fits a wire line.
MAX_LINE_BYTES = MAX_OUTPUT_CHARS - len(SPLIT_MARKER)
TASKS_DIR = "tasks"
T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AgentContext:
    """Shared handles of the running daemon (see the module docstring)."""

    settings: AgentSettings
    state: AgentState
    reporter: StateReporter
    collector: ResponseCollector
    send: Send
    #: Space kept for the state when the disk is full (None: no reserve).
    reserve: DiskReserve | None = None
    #: The last :meth:`save` failed: the state on disk is the last good one, retried.
    save_failed: bool = False

    def save(self) -> bool:
        """Persist the agent state (atomic, fsynced); False if that failed.

        Never raises: a failed write (disk full even after the reserve was freed, or a
        failing disk) leaves the last good state on disk and the current one in memory, and
        the daemon's timer loop retries (docs/reliability.md). Stops, reports and failures
        go on meanwhile; only a power cut before the retry loses the newest change, which
        the restart then re-derives (an interrupted stage is reported failed).
        """
        try:
            save_state(self.settings.state_path, self.state, self.reserve)
        except OSError as exc:
            if not self.save_failed:
                logger.error("cannot save the agent state (kept in memory, retried): %s", exc)
            self.save_failed = True
            return False
        if self.save_failed:
            logger.info("agent state saved again")
        self.save_failed = False
        return True

    @property
    def tasks_dir(self) -> Path:
        """``DIR/tasks``: one directory per task."""
        return self.settings.data_dir / TASKS_DIR

    def task_dir(self, task_id: str) -> Path:
        """``DIR/tasks/<task>`` (task ids are safe path components: see ``valid_name``)."""
        return self.tasks_dir / task_id

    def supervision(self, *, auto_restart: bool) -> SupervisionConfig:
        """How run commands are supervised."""
        return SupervisionConfig(
            auto_restart=auto_restart,
            grace_s=self.settings.stop_grace_s,
            max_line_bytes=MAX_LINE_BYTES,
        )

    def sequence(self) -> SequenceConfig:
        """Limits of install, build and terminal commands."""
        return SequenceConfig(
            timeout_s=self.settings.install_timeout_s,
            grace_s=self.settings.stop_grace_s,
            max_line_bytes=MAX_LINE_BYTES,
        )

    def disk_policy(self) -> DiskPolicy:
        """The disk rules of task assessment and of the low-disk state."""
        s = self.settings
        margin, low = s.disk_margin_bytes, s.low_disk_bytes
        if margin is None:
            margin = scaled_disk_bytes(s.data_dir, MARGIN_SHARE, MARGIN_CAP_BYTES)
        if low is None:
            low = scaled_disk_bytes(s.data_dir, LOW_DISK_SHARE, LOW_DISK_CAP_BYTES)
        return DiskPolicy(
            safety_margin_bytes=margin, max_data_bytes=s.max_data_bytes, low_disk_bytes=low
        )


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking ``fn`` in a worker thread. If the caller is cancelled meanwhile, wait for
    the thread to finish before the cancellation goes on: no thread keeps writing into a
    directory that the caller is about to remove."""
    job = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait({job})
        raise
