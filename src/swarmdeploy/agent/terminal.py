"""The remote terminal: one operator command at a time (``PUT/DELETE /targets/{id}/command``).

Commands run in ``DIR/terminal`` with the agent's command environment, in their own process
group, and their output is streamed as log lines of the pseudo task ``terminal`` (always
spooled, whatever the debug setting). A second command while one runs is refused (busy).
:meth:`Terminal.stop` kills the running command's whole group (TERM, grace, KILL) and
whatever it left behind; so does an agent shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from swarmdeploy.agent.context import AgentContext
from swarmdeploy.agent.process import child_env
from swarmdeploy.agent.runner import CommandResult, run_command

logger = logging.getLogger(__name__)

TERMINAL_TASK = "terminal"
TERMINAL_DIR = "terminal"
STAGE = "terminal"


class Terminal:
    """Runs terminal commands one at a time (see the module docstring)."""

    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._job: asyncio.Task[None] | None = None
        self._command = ""

    @property
    def busy(self) -> bool:
        """Whether a command is running."""
        return self._job is not None and not self._job.done()

    def start(self, command: str) -> str | None:
        """Start ``command``; None if started, else why not (one line)."""
        if self.busy:
            return f"busy: the terminal is running {self._command!r}"
        directory = self._ctx.settings.data_dir / TERMINAL_DIR
        directory.mkdir(mode=0o700, exist_ok=True)
        self._command = command
        self._job = asyncio.get_running_loop().create_task(self._run(command))
        return None

    async def _run(self, command: str) -> None:
        collector = self._ctx.collector
        collector.marker(TERMINAL_TASK, STAGE, f"$ {command}")
        logger.info("terminal command started")
        result = await run_command(
            command,
            cwd=self._ctx.settings.data_dir / TERMINAL_DIR,
            env=child_env(),
            on_line=collector.sink(TERMINAL_TASK, STAGE, debug=True),
            config=self._ctx.sequence(),
        )
        collector.marker(TERMINAL_TASK, STAGE, _ending(result), error=not result.ok)
        logger.info("terminal command ended")

    async def stop(self) -> bool:
        """Kill the running command (its whole group); False if none was running."""
        job = self._job
        if job is None or job.done():
            return False
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        self._ctx.collector.marker(TERMINAL_TASK, STAGE, "killed by terminal stop", error=True)
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
