"""``swarmdeploy terminal ID``: an interactive terminal on one device (seed figure 16).

Each line read from standard input (after a ``ID$`` prompt on standard error) is one
command: ``PUT /targets/{id}/command``, which the manager signs with the operator's own key
(issue 9) and the device verifies and runs under its ``--terminal`` policy. Its output is
read from ``/events`` (topic ``logs``, task ``terminal`` of this target; the stream is opened
before the first command, so nothing is missed) and printed as it comes, escaped.

Which lines belong to the command: the device marks the start of every terminal command
with an ``$agent`` line ``$ COMMAND`` in stage ``terminal:<key>`` and its end with another
``$agent`` line in that stage (``exit status N``, ``killed by terminal stop``, ...); a refused
command gets one ``$agent`` line ``refused: ...`` or ``busy: ...``. Lines before our start
marker (an earlier command's tail, another operator's command seen by an admin) are not
shown. Ctrl-C while a command runs stops it (``DELETE /targets/{id}/command``) and waits for
its end; a second Ctrl-C stops waiting. Ctrl-C at the prompt clears the line; Ctrl-D (end of
input) exits with status 0.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from swarmdeploy.cli.context import ctx_of
from swarmdeploy.cli.render import safe
from swarmdeploy.client import ApiError, ManagerClient
from swarmdeploy.client.stream import EventStream

AGENT_COMMAND = "$agent"
TERMINAL_TASK = "terminal"
#: After this long without the start marker the user is told the device has not started it.
QUEUED_NOTICE_S = 5.0
WAIT_S = 0.5


@dataclasses.dataclass
class CommandRun:
    """Which output lines belong to one command (see the module docstring)."""

    command: str
    stage: str | None = None
    ending: str | None = None

    def take(self, line: dict[str, Any]) -> str | None:
        """The text to print for ``line`` (``None``: not ours or a marker); sets
        :attr:`ending` when the command is over."""
        marker = line.get("command") == AGENT_COMMAND
        output = str(line.get("output", ""))
        if self.stage is None:
            if marker and output == f"$ {self.command}":
                self.stage = str(line.get("stage"))
            elif marker and output.startswith(("refused", "busy")):
                self.ending = output
            return None
        if line.get("stage") != self.stage:
            return None
        if marker:
            self.ending = output
            return None
        if str(line.get("command", "")).startswith("$"):
            return None
        return output


class Terminal:
    """One interactive session on ``target_id`` over an open :class:`EventStream`."""

    def __init__(
        self,
        client: ManagerClient,
        target_id: str,
        stream: EventStream,
        write: Callable[[str], None],
        note: Callable[[str], None],
    ) -> None:
        self.client = client
        self.target_id = target_id
        self.stream = stream
        self.write = write
        self.note = note

    def run(self, command: str) -> str:
        """Send ``command``, print its output until it ends; returns how it ended."""
        run = CommandRun(command)
        try:
            self.client.request(
                "PUT", f"/targets/{self.target_id}/command", json={"command": command}
            )
        except ApiError as exc:
            return f"refused: {exc}"
        try:
            self._until_end(run, notice_s=QUEUED_NOTICE_S)
        except KeyboardInterrupt:
            self.stop(run)
        return run.ending or "no end seen"

    def stop(self, run: CommandRun) -> None:
        """Stop the remote command (Ctrl-C) and wait for its end (a second Ctrl-C: not)."""
        self.note("^C: stopping the command (Ctrl-C again to stop waiting)")
        try:
            self.client.request("DELETE", f"/targets/{self.target_id}/command")
        except ApiError as exc:
            self.note(f"stop refused: {exc}")
            return
        if run.stage is None:  # never started here: there is no end to wait for
            run.ending = "stopped before it started"
            return
        try:
            self._until_end(run, notice_s=None)
        except KeyboardInterrupt:
            run.ending = "stopped; its end was not awaited"

    def _until_end(self, run: CommandRun, notice_s: float | None) -> None:
        started_at = time.monotonic()
        while run.ending is None:
            for frame in self.stream.frames(WAIT_S):
                if frame.get("topic") != "logs":
                    continue
                for line in frame.get("payload") or []:
                    text = run.take(line)
                    if text is not None:
                        self.write(text)  # escaped by the writer (Renderer.line)
            if not self.stream.available:
                raise ApiError(0, "the manager's /events stream is unavailable")
            if notice_s is not None and run.stage is None and run.ending is None:
                if time.monotonic() - started_at >= notice_s:
                    self.note("queued: the device has not started it yet (Ctrl-C cancels)")
                    notice_s = None


def _policy(target: dict[str, Any]) -> str:
    security = target.get("security") or {}
    policy = security.get("terminal") if isinstance(security, dict) else None
    return {
        "sandboxed": "commands run in the device's sandbox as its unprivileged user",
        "root": "this device runs terminal commands as root (its --terminal root)",
        "off": "this device refuses terminal commands (its --terminal off)",
    }.get(str(policy), "the device has not reported its terminal policy yet")


def terminal(
    ctx: typer.Context,
    target_id: Annotated[str, typer.Argument(metavar="ID", help="Target id.")],
) -> None:
    """Interactive terminal on one device: type commands, see their output as it comes.

    Ctrl-C stops the running command, Ctrl-D exits. Needs the operator role; commands are
    signed with your operator key and audited.

    Example: `swarmdeploy terminal pi-01`
    """
    c = ctx_of(ctx)

    def note(text: str) -> None:
        typer.echo(f"[{safe(text)}]", err=True)

    target = c.client.request("GET", f"/targets/{target_id}")
    params = {"topics": "logs", "target": target_id, "task": TERMINAL_TASK}
    with EventStream(c.client, params) as stream:
        stream.wait_open()
        note(f"terminal on {target_id}: {_policy(target)}; Ctrl-D to exit")
        session = Terminal(c.client, target_id, stream, c.out.line, note)
        while True:
            typer.echo(f"{safe(target_id)}$ ", err=True, nl=False)
            try:
                line = sys.stdin.readline()
            except KeyboardInterrupt:
                typer.echo("", err=True)
                continue
            if not line:
                typer.echo("", err=True)
                return
            command = line.strip()
            if command:
                note(session.run(command))
