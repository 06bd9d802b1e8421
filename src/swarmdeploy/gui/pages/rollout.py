"""The staged-rollout panel of the task page (docs/rollouts.md): the rollout's state and why
it halted, its groups with their counts and states, and (operators) Pause, Resume, Abort,
Retry failed and Roll back, each after a confirmation, through ``POST /tasks/{id}/<action>``.

The page re-reads the task on every ``taskUpdated`` and ``rolloutUpdated`` event and hands
the document to :meth:`RolloutPanel.show`; which buttons are enabled follows
:data:`swarmdeploy.gui.rollout.ACTIONS`. An API refusal is shown in the panel (and as a
notification) with the API's own words; it is never swallowed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.pages.layout import DEPLOYMENTS
from swarmdeploy.gui.rollout import ACTIONS, Action, group_rows, offered, summary
from swarmdeploy.gui.rows import printable


def _col(name: str, label: str, align: str = "left") -> dict[str, Any]:
    return {"name": name, "label": label, "field": name, "align": align}


GROUP_COLUMNS = [
    _col("name", "Group"),
    _col("state", "State"),
    _col("size", "Devices", "right"),
    _col("succeeded", "Succeeded", "right"),
    _col("failed", "Failed", "right"),
    _col("notAnnounced", "Not announced", "right"),
    _col("thresholds", "Thresholds"),
    _col("states", "Devices by state"),
]


class RolloutPanel:
    """The panel; hidden for a task without a rollout. ``reload`` re-reads the task (after an
    action, so the page does not wait for the next event)."""

    def __init__(
        self,
        ctx: GuiContext,
        api_key: str,
        task_id: str,
        can_act: bool,
        reload: Callable[[], Awaitable[None]],
    ) -> None:
        self._ctx = ctx
        self._api_key = api_key
        self._task_id = task_id
        self._reload = reload
        self._buttons: dict[str, Any] = {}
        with ui.column().classes("w-full mt-4").props('data-testid="rollout"') as self._box:
            ui.label("Staged rollout").classes("text-md font-bold")
            self._summary = ui.label("").props('data-testid="rollout-state"')
            self._reason = ui.label("").props('data-testid="rollout-reason"')
            if can_act:  # viewers get no action buttons at all (the API refuses them anyway)
                with ui.row():
                    for action in ACTIONS:
                        self._buttons[action.name] = ui.button(
                            action.label, on_click=lambda _, a=action: self._confirm(a)
                        ).props(f'color={action.color} data-testid="rollout-{action.name}"')
            self._error = ui.label("").classes("text-negative")
            self._error.props('data-testid="rollout-error"')
            self._error.set_visibility(False)
            self._groups = ui.table(columns=GROUP_COLUMNS, rows=[], row_key="key").classes("w-full")
            self._groups.props(
                'data-testid="rollout-groups" hide-pagination :rows-per-page-options="[0]"'
            )
        self._box.set_visibility(False)

    def show(self, task: dict[str, Any]) -> None:
        """Show ``task``'s rollout (or hide the panel when it has none)."""
        rollout = task.get("rollout")
        self._box.set_visibility(rollout is not None)
        if rollout is None:
            return
        self._summary.text = summary(rollout, int(time.time() * 1000))
        reason = printable(rollout.get("reason") or "")
        label = "Halted because: " if rollout["state"] == "halted" else ""
        self._reason.text = f"{label}{reason}" if reason else ""
        self._reason.classes(replace="text-negative" if rollout["state"] == "halted" else "")
        self._reason.set_visibility(bool(reason))
        enabled = offered(task)
        for name, button in self._buttons.items():
            button.set_enabled(enabled[name])
        self._groups.rows = group_rows(rollout)
        self._groups.update()

    def _confirm(self, action: Action) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(action.question).props('data-testid="rollout-question"')

            async def confirmed() -> None:
                dialog.close()
                await self._run(action)

            with ui.row():
                ui.button(action.label, on_click=confirmed).props(
                    f'color={action.color} data-testid="rollout-confirm"'
                )
                ui.button("Cancel", on_click=dialog.close).props(
                    'flat data-testid="rollout-cancel"'
                )
        dialog.open()

    async def _run(self, action: Action) -> None:
        path = f"/tasks/{self._task_id}/{action.name}"
        try:
            async with self._ctx.client(self._api_key) as api:
                answer = await api.request("POST", path, json={})
        except ApiError as exc:
            text = f"{action.label} refused (HTTP {exc.status}): {printable(exc.message)}"
            self._error.text = text
            self._error.set_visibility(True)
            ui.notify(text, type="negative")
            return
        self._error.set_visibility(False)
        new_task = answer.get("id") if isinstance(answer, dict) else None
        if action.name == "rollback" and new_task and new_task != self._task_id:
            ui.notify(f"Rolling back as deployment {printable(new_task)}")
            ui.navigate.to(f"{DEPLOYMENTS}/{new_task}")
            return
        ui.notify(f"{action.label}: done")
        await self._reload()
