"""The remote terminal: one operator command at a time (``PUT/DELETE /targets/{id}/command``).

The device decides how (``--terminal``, issue 9, ``docs/security.md`` "Terminal"):

* ``sandboxed`` (default): the command runs like a deployed one -- as the sandbox user
  (uid 65534, no capabilities, ``no_new_privs``) in bubblewrap with a read-only system and
  the agent's data dir hidden; the network is shared (diagnosing it is what a terminal is
  for); ``DIR/terminal`` is its writable ``$HOME`` and working dir;
* ``root``: as the agent's own user, unconfined (an explicit choice of the device's owner);
* ``off``: every command is refused (``terminal_off``).

Which command runs and whether it was signed is decided before (:mod:`.request_trust`).
Commands run in their own process group, and their output is streamed as log lines of the
pseudo task ``terminal`` (always spooled, whatever the debug setting), with stage
``terminal:<signing key id>`` so the manager can show them to the operator who ran them
only. A second command while one runs is refused (busy). :meth:`Terminal.stop` kills the
running command's whole group (TERM, grace, KILL) and whatever it left behind; so does an
agent shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from swarmdeploy.agent.confine import Confinement
from swarmdeploy.agent.context import AgentContext, in_thread
from swarmdeploy.agent.errors import LaunchError
from swarmdeploy.agent.process import Launcher, child_env
from swarmdeploy.agent.runner import CommandResult, run_command

logger = logging.getLogger(__name__)

TERMINAL_TASK = "terminal"
TERMINAL_DIR = "terminal"
STAGE = "terminal"
POLICY_OFF = "off"
POLICY_ROOT = "root"


def stage_of(key_id: str) -> str:
    """The log stage of a terminal command signed with ``key_id`` (unsigned: ``terminal``)."""
    return f"{STAGE}:{key_id}" if key_id else STAGE


class Terminal:
    """Runs terminal commands one at a time (see the module docstring)."""

    def __init__(self, ctx: AgentContext, confinement: Confinement) -> None:
        self._ctx = ctx
        self._confine = confinement
        self._job: asyncio.Task[None] | None = None
        self._command = ""
        self._stage = STAGE

    @property
    def policy(self) -> str:
        """The device's terminal policy: ``off``, ``sandboxed`` or ``root``."""
        return self._ctx.settings.terminal

    @property
    def busy(self) -> bool:
        """Whether a command is running."""
        return self._job is not None and not self._job.done()

    def refusal(self) -> str | None:
        """Why no command may start now (policy off, busy), or None."""
        if self.policy == POLICY_OFF:
            return "refused: terminal_off: this device does not allow terminal commands"
        if self.busy:
            return f"busy: the terminal is running {self._command!r}"
        return None

    async def start(self, command: str, *, key_id: str = "") -> str | None:
        """Start ``command`` (signed with ``key_id``); None if started, else why not."""
        refused = self.refusal()
        if refused is not None:
            return refused
        directory = self._ctx.settings.data_dir / TERMINAL_DIR
        directory.mkdir(mode=0o700, exist_ok=True)
        try:
            launcher = await in_thread(lambda: self._launcher(directory))
        except (LaunchError, OSError) as exc:
            return f"refused: sandbox: {exc}"
        self._command, self._stage = command, stage_of(key_id)
        self._job = asyncio.get_running_loop().create_task(self._run(command, launcher))
        return None

    def _launcher(self, directory: Path) -> Launcher | None:
        """The launcher of the policy (blocking): None runs as the agent's user."""
        if self.policy == POLICY_ROOT:
            return None
        return self._confine.terminal_stage(directory)

    async def _run(self, command: str, launcher: Launcher | None) -> None:
        collector, stage = self._ctx.collector, self._stage
        directory = self._ctx.settings.data_dir / TERMINAL_DIR
        collector.marker(TERMINAL_TASK, stage, f"$ {command}")
        logger.info("terminal command started (%s)", self.policy)
        result = await run_command(
            command,
            cwd=directory,
            env=child_env({"HOME": str(directory)}),
            on_line=collector.sink(TERMINAL_TASK, stage, debug=True),
            config=self._ctx.sequence(),
            launcher=launcher,
        )
        collector.marker(TERMINAL_TASK, stage, _ending(result), error=not result.ok)
        logger.info("terminal command ended")

    async def stop(self) -> bool:
        """Kill the running command (its whole group); False if none was running."""
        job = self._job
        if job is None or job.done():
            return False
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        self._ctx.collector.marker(
            TERMINAL_TASK, self._stage, "killed by terminal stop", error=True
        )
        return True


def _ending(result: CommandResult) -> str:
    if result.error is not None:
        return result.error
    if result.timed_out:
        return f"timed out after {result.duration_s:.0f} s and was killed"
    code = result.exit_code
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit status {code}"
