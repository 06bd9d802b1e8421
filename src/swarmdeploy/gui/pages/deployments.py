"""Deployments (seed figures 18-21): the list with description, time, who signed and counts per
state; one deployment's progress tree (build -> announce -> transfer -> install -> run, with
the devices in each state), failures grouped by identical reason, a progress bar; stop and
delete for operators; a staged rollout's groups and its controls (:mod:`.rollout`). Updates
itself live from ``/events`` (``taskUpdated``, ``rolloutUpdated``)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.client.progress import Progress, progress
from swarmdeploy.gui.compose import duplicate, to_yaml
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.live import Debounced, follow
from swarmdeploy.gui.pages.layout import (
    DEPLOYMENTS,
    LOGS,
    NEW_DEPLOYMENT,
    open_page,
)
from swarmdeploy.gui.pages.rollout import RolloutPanel
from swarmdeploy.gui.rollout import ENDED
from swarmdeploy.gui.rows import ago, printable
from swarmdeploy.gui.session import Session

#: The list re-reads at most this often while deployments change.
REFRESH_S = 2.0
SAFETY_REFRESH_S = 15.0
#: Devices listed under one state of the tree before "... and N more".
TREE_DEVICES = 50
TASK_TOPICS = "taskUpdated,taskDeleted,rolloutUpdated"

COLUMNS: list[dict[str, Any]] = [
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "description", "label": "Description", "field": "description", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left"},
    {"name": "counts", "label": "Devices by state", "field": "counts", "align": "left"},
    {"name": "signedBy", "label": "Signed by", "field": "signedBy", "align": "left"},
    {"name": "id", "label": "Id", "field": "id", "align": "left"},
]


def _rollout_ended(task: dict[str, Any]) -> bool:
    """Whether the task has no rollout or one that will not change any more by itself."""
    rollout = task.get("rollout")
    return rollout is None or rollout["state"] in ENDED


def task_row(task: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """One row of the deployments list."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(task.get("stateCounts", {}).items()))
    signer = task.get("signedBy") or {}
    return {
        "key": task["id"],
        "id": printable(task["id"]),
        "created": ago(task["createdAt"], now_ms),
        "description": printable(task.get("description") or ""),
        "status": task["status"],
        "counts": counts,
        "signedBy": printable(signer.get("name") or task.get("createdBy") or ""),
    }


def tree_nodes(p: Progress) -> list[dict[str, Any]]:
    """Quasar ``q-tree`` nodes: stage -> state (count) -> devices (first :data:`TREE_DEVICES`)."""
    nodes = []
    for stage, states in p.tree.items():
        children = []
        for state, ids in states.items():
            devices = [
                {"id": f"{stage}/{state}/{i}", "label": printable(i), "device": i} for i in ids
            ]
            if len(devices) > TREE_DEVICES:
                more = len(devices) - TREE_DEVICES
                devices = [
                    *devices[:TREE_DEVICES],
                    {"id": f"{stage}/{state}/+", "label": f"… and {more} more"},
                ]
            children.append(
                {"id": f"{stage}/{state}", "label": f"{state} ({len(ids)})", "children": devices}
            )
        count = sum(len(ids) for ids in states.values())
        nodes.append({"id": stage, "label": f"{stage} ({count})", "children": children})
    return nodes


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/deployments`` and ``/ui/deployments/{task_id}``."""
    _register_list(ctx)
    _register_progress(ctx)


def _register_list(ctx: GuiContext) -> None:
    @ui.page(DEPLOYMENTS)
    async def deployments() -> RedirectResponse | None:
        session = open_page(ctx, "Deployments")
        if not isinstance(session, Session):
            return session
        if session.operator.allows("operator"):
            ui.button("New deployment", on_click=lambda: ui.navigate.to(NEW_DEPLOYMENT)).props(
                'data-testid="task-new"'
            )
        search = ui.input("Search descriptions (every word)").props(
            'clearable debounce=400 data-testid="task-search"'
        )
        table = ui.table(columns=COLUMNS, rows=[], row_key="key").classes("w-full")
        table.props('data-testid="task-table"')
        table.on("rowClick", lambda e: ui.navigate.to(f"{DEPLOYMENTS}/{e.args[1]['key']}"))

        async def load() -> None:
            params = {"sortOrder": "desc", "perPage": 200, "description": search.value or None}
            try:
                async with ctx.client(session.api_key) as api:
                    answer = await api.request("GET", "/tasks", params=params)
            except ApiError as exc:
                ui.notify(f"Cannot list deployments: {printable(exc.message)}", type="negative")
                return
            now_ms = int(time.time() * 1000)
            table.rows = [task_row(t, now_ms) for t in answer["items"]]
            table.update()

        search.on_value_change(load)
        refresher = Debounced(load, REFRESH_S)

        async def changed(_: dict[str, Any]) -> None:
            await refresher.poke()

        follow(ctx, session.api_key, {"topics": "taskAdded,taskUpdated,taskDeleted"}, changed)
        await load()
        return None


def _register_progress(ctx: GuiContext) -> None:
    @ui.page(DEPLOYMENTS + "/{task_id}")
    async def deployment(task_id: str) -> RedirectResponse | None:
        session = open_page(ctx, "Deployment")
        if not isinstance(session, Session):
            return session
        header = ui.label("").classes("text-lg font-bold").props('data-testid="task-title"')
        status = ui.label("").props('data-testid="task-status"')
        links = ui.row().props('data-testid="task-links"')
        bar = ui.linear_progress(value=0, show_value=False).props(
            'instant-feedback size=10px data-testid="task-progress"'
        )
        counts = ui.label("").props('data-testid="task-counts"')
        stop: Any = None
        if session.operator.allows("operator"):
            with ui.row():
                stop = ui.button("Stop").props('color=warning data-testid="task-stop"')
                stop.on_click(lambda: _stop(ctx, session.api_key, task_id))
                ui.button("Duplicate…", on_click=lambda: _duplicate(ctx, session, task_id)).props(
                    'flat data-testid="task-duplicate"'
                )
                ui.button(
                    "Delete…", on_click=lambda: _confirm_delete(ctx, session.api_key, task_id)
                ).props('flat color=negative data-testid="task-delete"')
        ui.button("Descriptor", on_click=lambda: _show_yaml(ctx, session.api_key, task_id)).props(
            'flat data-testid="task-yaml"'
        )
        panel = RolloutPanel(
            ctx, session.api_key, task_id, session.operator.allows("operator"), lambda: load()
        )
        ui.label("Failures by reason").classes("text-md font-bold mt-4")
        failures = ui.column().props('data-testid="task-failures"')
        ui.label("Progress").classes("text-md font-bold mt-4")
        tree = ui.tree([], label_key="label").props('data-testid="task-tree"')

        def open_log(event: Any) -> None:
            """A device in the tree opens its live log of this deployment."""
            parts = str(event.value or "").split("/", 2)
            if len(parts) == 3 and parts[2] != "+":
                ui.navigate.to(f"{LOGS}?target={quote(parts[2])}&task={quote(task_id)}&live=1")

        tree.on_select(open_log)
        timer: Any = None

        async def load() -> None:
            try:
                async with ctx.client(session.api_key) as api:
                    task = await api.request("GET", f"/tasks/{task_id}")
            except ApiError as exc:
                header.text = f"Deployment {printable(task_id)}: {printable(exc.message)}"
                if timer is not None:
                    timer.deactivate()
                return
            p = progress(task)
            panel.show(task)
            _show_links(links, task)
            header.text = printable(task.get("description") or task["id"])
            status.text = f"{task['status']} · {p.total} devices"
            bar.value = p.done_fraction
            counts.text = (
                f"{p.succeeded} succeeded, {p.failed} failed, {p.stopped} stopped, "
                f"{len(p.waiting)} waiting"
            )
            failures.clear()
            with failures:
                if not p.failures:
                    ui.label("none")
                for group in p.failures:
                    reason = printable(group.reason) or "(no reason given)"
                    ui.label(f"{group.count} devices {group.state}: {reason}").classes(
                        "text-negative"
                    ).props('data-testid="failure-group"')
            tree._props["nodes"] = tree_nodes(p)
            # Stages and states open: the devices (50 per state at most) are one click away.
            tree.expand(
                [*p.tree, *(f"{st}/{state}" for st, states in p.tree.items() for state in states)]
            )
            tree.update()
            if stop is not None:
                stop.set_visibility(not p.finished)
            if p.finished and _rollout_ended(task) and timer is not None:
                timer.deactivate()

        # Live: every state change of this task or its rollout re-reads it (at most every
        # 0.5 s); the slow timer only covers events a stalled page missed.
        refresher = Debounced(load, 0.5)

        async def changed(_: dict[str, Any]) -> None:
            await refresher.poke()

        follow(ctx, session.api_key, {"topics": TASK_TOPICS, "task": task_id}, changed)
        timer = ui.timer(SAFETY_REFRESH_S, load)
        await load()
        return None


def _show_links(container: Any, task: dict[str, Any]) -> None:
    """Links to the task this one rolls back (``rollbackOf``) and to those rolling it back
    (``rolledBackBy``), as ``POST /tasks/{id}/rollback`` links them."""
    container.clear()
    with container:
        if task.get("rollbackOf"):
            other = str(task["rollbackOf"])
            ui.link(f"Rolls back {printable(other)}", f"{DEPLOYMENTS}/{quote(other)}")
        for other in task.get("rolledBackBy") or []:
            ui.link(f"Rolled back by {printable(other)}", f"{DEPLOYMENTS}/{quote(str(other))}")


async def _stop(ctx: GuiContext, api_key: str, task_id: str) -> None:
    try:
        async with ctx.client(api_key) as api:
            answer = await api.request("PUT", f"/tasks/{task_id}/stop")
    except ApiError as exc:
        ui.notify(f"Not stopped: {printable(exc.message)}", type="negative")
        return
    ui.notify(printable(answer.get("message", "stop requested")))


async def _task(ctx: GuiContext, api_key: str, task_id: str) -> dict[str, Any] | None:
    try:
        async with ctx.client(api_key) as api:
            task: dict[str, Any] = await api.request("GET", f"/tasks/{task_id}")
            return task
    except ApiError as exc:
        ui.notify(f"Cannot read the task: {printable(exc.message)}", type="negative")
        return None


async def _duplicate(ctx: GuiContext, session: Session, task_id: str) -> None:
    """Open the new-deployment form with this task's descriptor, reusing its files."""
    task = await _task(ctx, session.api_key, task_id)
    if task is not None:
        session.draft_yaml = to_yaml(duplicate(task))
        ui.navigate.to(NEW_DEPLOYMENT)


async def _show_yaml(ctx: GuiContext, api_key: str, task_id: str) -> None:
    """The task as stored (archive by digest), as YAML."""
    task = await _task(ctx, api_key, task_id)
    if task is None:
        return
    shown = {k: task[k] for k in ("description", "debug", "source", "build", "deploy", "sandbox")
             if task.get(k) not in (None, "", False)}  # fmt: skip
    with ui.dialog() as dialog, ui.card().classes("w-[48rem] max-w-full"):
        ui.code(to_yaml(shown), language="yaml").props('data-testid="task-yaml-text"').classes(
            "w-full"
        )
        ui.button("Close", on_click=dialog.close).props("flat")
    dialog.open()


def _confirm_delete(ctx: GuiContext, api_key: str, task_id: str) -> None:
    """Delete the task, its per-device states and its logs, after a confirmation; the API
    refuses (409) while devices still run it."""
    with ui.dialog() as dialog, ui.card():
        ui.label(
            f"Delete deployment {printable(task_id)}? Its per-device states and its logs go "
            "with it (the audit of who did what stays)."
        )

        async def confirmed() -> None:
            try:
                async with ctx.client(api_key) as api:
                    await api.request("DELETE", f"/tasks/{task_id}")
            except ApiError as exc:
                dialog.close()
                ui.notify(f"Not deleted: {printable(exc.message)}", type="negative")
                return
            dialog.close()
            ui.navigate.to(DEPLOYMENTS)

        with ui.row():
            ui.button("Delete", on_click=confirmed).props(
                'color=negative data-testid="task-delete-confirm"'
            )
            ui.button("Cancel", on_click=dialog.close).props("flat")
    dialog.open()
