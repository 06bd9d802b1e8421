"""Terminal (seed figure 16): run a command on one device and watch its output live.

The command goes through ``PUT /targets/{id}/command``: the manager signs it with the
operator's key, the agent verifies it and runs it as its own ``--terminal`` policy says (by
default as the sandbox user), and both sides audit it. Output arrives on ``/events`` (topic
``logs``, task ``terminal``), visible to the operator who ran it and to admins only. Device
output is written with control characters escaped, so it cannot drive the browser terminal
(clear the screen, set the title, plant links, write the clipboard)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.live import follow
from swarmdeploy.gui.pages.layout import HOME, open_page
from swarmdeploy.gui.rows import printable
from swarmdeploy.gui.session import Session

TERMINAL_TASK = "terminal"


def policy_of(target: dict[str, Any]) -> str:
    """The device's own terminal policy as it reports it (``unknown`` before a report)."""
    security = target.get("security") or {}
    return str(security.get("terminal") or "unknown")


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/devices/{target_id}/terminal``."""

    @ui.page(HOME + "/{target_id}/terminal")
    async def terminal(target_id: str) -> RedirectResponse | None:
        session = open_page(ctx, "Terminal", "operator", "The terminal needs the operator role.")
        if not isinstance(session, Session):
            return session
        await TerminalPage(ctx, session, target_id).start()
        return None


class TerminalPage:
    """One device's terminal."""

    def __init__(self, ctx: GuiContext, session: Session, target_id: str) -> None:
        self.ctx = ctx
        self.api_key = session.api_key
        self.target_id = target_id
        self.title = ui.label(f"Terminal on {printable(target_id)}").classes("text-lg font-bold")
        self.policy = ui.label("").props('data-testid="terminal-policy"')
        self.screen = ui.xterm({"convertEol": True, "disableStdin": True, "rows": 24})
        self.screen.classes("w-full").props('data-testid="terminal-screen"')
        with ui.row().classes("w-full items-center"):
            self.command = (
                ui.input("Command")
                .classes("grow")
                .props('data-testid="terminal-command" autofocus')
            )
            ui.button("Run", on_click=self.run).props('data-testid="terminal-run"')
            ui.button("Stop", on_click=self.stop).props(
                'flat color=negative data-testid="terminal-stop"'
            )
        self.command.on("keydown.enter", self.run)

    async def start(self) -> None:
        """Show the device's policy and follow its terminal output."""
        try:
            async with self.ctx.client(self.api_key) as api:
                target = await api.request("GET", f"/targets/{self.target_id}")
        except ApiError as exc:
            self.policy.text = printable(exc.message)
            return
        policy = policy_of(target)
        self.policy.text = {
            "sandboxed": "Commands run in the device's sandbox, as its unprivileged user.",
            "root": "This device runs terminal commands as root (its own --terminal root).",
            "off": "This device does not accept terminal commands (--terminal off).",
        }.get(policy, "The device has not reported its terminal policy yet.")
        params = {"topics": "logs", "target": self.target_id, "task": TERMINAL_TASK}
        follow(self.ctx, self.api_key, params, self.output)

    async def output(self, frame: dict[str, Any]) -> None:
        """Write terminal output lines (escaped) as they arrive."""
        if frame["topic"] != "logs":
            return
        for line in frame["payload"]:
            if line.get("command", "").startswith("$"):
                continue  # the manager's and agent's own notes (audit pointers, markers)
            self.screen.write(printable(line["output"]) + "\r\n")

    async def run(self) -> None:
        """Send the typed command (signed by the manager with this operator's key)."""
        command = (self.command.value or "").strip()
        if not command:
            return
        self.screen.write(f"$ {printable(command)}\r\n")
        self.command.value = ""
        try:
            async with self.ctx.client(self.api_key) as api:
                await api.request(
                    "PUT", f"/targets/{self.target_id}/command", json={"command": command}
                )
        except ApiError as exc:
            self.screen.write(f"[refused: {printable(exc.message)}]\r\n")

    async def stop(self) -> None:
        """Kill the running command (its whole process group on the device)."""
        try:
            async with self.ctx.client(self.api_key) as api:
                await api.request("DELETE", f"/targets/{self.target_id}/command")
        except ApiError as exc:
            self.screen.write(f"[stop refused: {printable(exc.message)}]\r\n")
            return
        self.screen.write("[stop sent]\r\n")
