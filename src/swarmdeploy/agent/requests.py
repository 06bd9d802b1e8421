"""Manager requests: ``stop``, ``log_request``, ``terminal``, ``terminal_stop``, ``config``
(docs/protocol.md §6.8).

Each request is carried out once and answered with ``request_ack{request_id, ok, message}``.
The manager re-sends unacknowledged requests at every reconnect, so request ids are
remembered (persisted, bounded: ``AgentState.recent_requests``) once a request is done: a
repeat is acknowledged again without being executed twice. A repeat that arrives while the
first is still being carried out is ignored; its ack follows when it is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from swarmdeploy.agent.context import AgentContext
from swarmdeploy.agent.errors import TaskRefused
from swarmdeploy.agent.processor import TaskProcessor
from swarmdeploy.agent.request_trust import RequestTrust, claimed_key_id
from swarmdeploy.agent.state import Location
from swarmdeploy.agent.terminal import TERMINAL_TASK, Terminal, stage_of
from swarmdeploy.protocol.messages import (
    Config,
    LogRequest,
    RequestAck,
    Stop,
    TerminalCommand,
    TerminalStop,
)

logger = logging.getLogger(__name__)

Request = Stop | LogRequest | TerminalCommand | TerminalStop | Config
#: Applies the hint subscriptions for a new set of tags.
SetTags = Callable[[list[str]], Awaitable[None]]


class RequestHandler:
    """Carries out manager requests (see the module docstring)."""

    def __init__(
        self,
        ctx: AgentContext,
        processor: TaskProcessor,
        terminal: Terminal,
        set_tags: SetTags,
        trust: RequestTrust,
    ) -> None:
        self._ctx = ctx
        self._processor = processor
        self._terminal = terminal
        self._trust = trust
        self._set_tags = set_tags
        self._busy: set[str] = set()
        self._jobs: set[asyncio.Task[None]] = set()

    def handle(self, msg: Request) -> None:
        """Start carrying out ``msg`` (never blocks: the work runs in its own task)."""
        request_id = msg.request_id
        if request_id in self._busy:
            return
        repeat = request_id in self._ctx.state.recent_requests
        self._busy.add(request_id)
        job = asyncio.get_running_loop().create_task(self._carry_out(msg, repeat))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _carry_out(self, msg: Request, repeat: bool) -> None:
        try:
            if repeat:
                ok, text = True, "already carried out"
            else:
                ok, text = await self._execute(msg)
                self._ctx.state.remember_request(msg.request_id)
                self._ctx.save()
        except Exception:  # top of a request: log it, answer it, keep the agent running
            logger.exception("request %s (%s) failed", msg.request_id, type(msg).__name__)
            ok, text = False, "internal error on the agent"
        finally:
            self._busy.discard(msg.request_id)
        await self._ctx.send(RequestAck(request_id=msg.request_id, ok=ok, message=text[:4096]))

    async def _execute(self, msg: Request) -> tuple[bool, str]:
        if isinstance(msg, Stop):
            return await self._stop(msg.task_id or None)
        if isinstance(msg, LogRequest):
            moved = self._ctx.collector.on_log_request(msg.since_ms)
            return True, f"{moved} buffered line(s) queued"
        if isinstance(msg, TerminalCommand):
            return await self._terminal_command(msg)
        if isinstance(msg, TerminalStop):
            killed = await self._terminal.stop()
            return True, "killed" if killed else "no terminal command was running"
        return await self._configure(msg)

    async def _terminal_command(self, msg: TerminalCommand) -> tuple[bool, str]:
        """Run a terminal command if the device's policy allows it and its signature
        verifies (:mod:`.request_trust`); a refusal runs nothing and says why."""
        refused = self._terminal.refusal()
        if refused is None:
            try:
                authorised = self._trust.accept_terminal(msg)
            except TaskRefused as exc:
                refused = str(exc)
            else:
                refused = await self._terminal.start(authorised.command, key_id=authorised.key_id)
        if refused is None:
            return True, "started"
        logger.warning("terminal command %s refused: %s", msg.request_id, refused)
        stage = stage_of(claimed_key_id(msg.certificate))
        self._ctx.collector.marker(TERMINAL_TASK, stage, refused, error=True)
        return False, refused

    async def _stop(self, task_id: str | None) -> tuple[bool, str]:
        logger.info("stop requested for %s", task_id or "every task")
        stopped = await self._processor.stop(task_id, "stopped by the operator")
        if task_id is None and await self._terminal.stop():
            stopped.append("terminal")
        return True, ("stopped " + ", ".join(stopped)) if stopped else "nothing to stop"

    async def _configure(self, msg: Config) -> tuple[bool, str]:
        state = self._ctx.state
        if msg.revision < state.config_revision:
            return True, f"revision {msg.revision} is older than {state.config_revision}; ignored"
        state.tags = list(dict.fromkeys(msg.tags))
        state.name = msg.name
        loc = msg.location
        state.location = None if loc is None else Location(loc.lat, loc.lon)
        state.config_revision = msg.revision
        self._ctx.save()
        await self._set_tags(state.tags)
        logger.info("configuration revision %d applied (tags: %s)", msg.revision,
                    ", ".join(state.tags) or "none")  # fmt: skip
        return True, f"revision {msg.revision} applied"

    async def close(self) -> None:
        """Agent shutdown: wait briefly for requests in progress, then cancel them."""
        if self._jobs:
            _, pending = await asyncio.wait(set(self._jobs), timeout=1.0)
            for job in pending:
                job.cancel()
            if pending:
                await asyncio.wait(pending)
