"""Logs: search with the API's filters (device, task, stage, full text, errors only), newest
first, errors highlighted; "Live" tails new lines from ``/events`` (topic ``logs``) with the
same device/task filters."""

from __future__ import annotations

from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui import logview
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.live import follow
from swarmdeploy.gui.pages.layout import LOGS, open_page
from swarmdeploy.gui.rows import printable
from swarmdeploy.gui.session import Session

PAGE = 500
#: Lines kept on screen while tailing.
TAIL_MAX = 2000


def matches(line: dict[str, Any], stage: str | None, words: list[str], errors: bool) -> bool:
    """Whether a live ``line`` passes the filters the server does not apply to events."""
    if stage and line["stage"] != stage:
        return False
    if errors and not line["error"]:
        return False
    text = line["output"].lower()
    return all(word.lower() in text for word in words)


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/logs``."""

    @ui.page(LOGS)
    async def logs(target: str = "", task: str = "", live: str = "") -> RedirectResponse | None:
        session = open_page(ctx, "Logs")
        if not isinstance(session, Session):
            return session
        with ui.row().classes("items-end gap-3"):
            device = ui.input("Device", value=target).props('data-testid="logs-target"')
            task_in = ui.input("Task", value=task).props('data-testid="logs-task"')
            stage = ui.select(["", "install", "run", "build", "terminal"], label="Stage", value="")
            text = ui.input("Text (every word)").props('data-testid="logs-text"')
            errors = ui.checkbox("Errors only").props('data-testid="logs-errors"')
            search = ui.button("Search").props('data-testid="logs-search"')
            live_switch = ui.switch("Live").props('data-testid="logs-live"')
        summary = ui.label("").props('data-testid="logs-summary"')
        table = logview.log_table("logs-table")
        shown: list[dict[str, Any]] = []

        def params() -> dict[str, Any]:
            return {
                "target": device.value or None,
                "task": task_in.value or None,
                "stage": stage.value or None,
                "output": text.value or None,
                "error": "true" if errors.value else None,
                "sortOrder": "desc",
                "perPage": PAGE,
            }

        async def run_search() -> None:
            try:
                async with ctx.client(session.api_key) as api:
                    answer = await api.request("GET", "/logs", params=params())
            except ApiError as exc:
                ui.notify(f"Search refused: {printable(str(exc))}", type="negative")
                return
            shown[:] = answer["items"]
            logview.show(table, shown)
            summary.text = f"{answer['total']} lines match; the newest {len(shown)} are shown"

        async def tail(frame_: dict[str, Any]) -> None:
            if not live_switch.value or frame_["topic"] != "logs":
                return
            words = (text.value or "").split()
            fresh = [
                line
                for line in frame_["payload"]
                if matches(line, stage.value or None, words, bool(errors.value))
            ]
            if fresh:
                shown[:0] = list(reversed(fresh))
                del shown[TAIL_MAX:]
                logview.show(table, shown)

        following: list[Any] = []

        def subscribe_live() -> None:
            while following:
                following.pop().cancel()
            if live_switch.value:
                filters = {"topics": "logs"}
                if device.value:
                    filters["target"] = device.value
                if task_in.value:
                    filters["task"] = task_in.value
                following.append(follow(ctx, session.api_key, filters, tail))

        search.on_click(run_search)
        live_switch.on_value_change(lambda _: subscribe_live())
        await run_search()
        if live:  # opened from a deployment's progress tree: follow at once
            live_switch.value = True
        return None
