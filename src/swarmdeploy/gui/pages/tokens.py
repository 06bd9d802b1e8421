"""Registration tokens (seed figure 13): create a set (name, count, lifetime), show its tokens
once with a copy button and the exact agent command line, list sets with what is left, delete.
The token API is admin-only, and so is this page."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.pages.layout import TOKENS, open_page
from swarmdeploy.gui.rows import agent_command, ago, printable
from swarmdeploy.gui.session import Session

COLUMNS: list[dict[str, Any]] = [
    {"name": "name", "label": "Set", "field": "name", "align": "left"},
    {"name": "available", "label": "Unused", "field": "available", "align": "right"},
    {"name": "total", "label": "Total", "field": "total", "align": "right"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "expires", "label": "Expires", "field": "expires", "align": "left"},
]


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/tokens``."""

    @ui.page(TOKENS)
    async def tokens() -> RedirectResponse | None:
        session = open_page(ctx, "Tokens", "admin", "Registration tokens need the admin role.")
        if not isinstance(session, Session):
            return session
        api_key = session.api_key
        with ui.row().classes("items-end gap-4"):
            name = ui.input("Set name").props('data-testid="token-name"')
            count = ui.number("Tokens", value=10, min=1, max=10_000, precision=0).props(
                'data-testid="token-count"'
            )
            days = ui.number("Valid for (days)", value=7, min=1, max=365, precision=0).props(
                'data-testid="token-days"'
            )
            create = ui.button("Create").props('data-testid="token-create"')
        table = ui.table(columns=COLUMNS, rows=[], row_key="key").classes("w-full")
        table.props('data-testid="token-table"')
        table.add_slot(
            "body-cell-name",
            """<q-td :props="props">{{ props.value }}
               <q-btn flat dense size="sm" color="negative" icon="delete"
                 :data-testid="'token-delete-' + props.row.key"
                 @click="$parent.$emit('remove', props.row.key)" /></q-td>""",
        )

        async def load() -> None:
            now_ms = int(time.time() * 1000)
            try:
                async with ctx.client(api_key) as api:
                    sets = await api.request("GET", "/token_sets", params={"perPage": 1000})
            except ApiError as exc:
                ui.notify(f"Cannot list token sets: {printable(exc.message)}", type="negative")
                return
            table.rows = [_row(item, now_ms) for item in sets["items"]]
            table.update()

        async def submit() -> None:
            body = {
                "name": (name.value or "").strip(),
                "total": int(count.value or 0),
                "expiresIn": int(days.value or 0) * 86_400,
            }
            try:
                async with ctx.client(api_key) as api:
                    created = await api.request("POST", "/token_sets", json=body)
                    ca = await api.request("GET", "/ca")
            except ApiError as exc:
                ui.notify(f"Not created: {printable(str(exc))}", type="negative")
                return
            _show_once(created, ca["certificate"], _manager_url())
            name.value = ""
            await load()

        async def remove(event: Any) -> None:
            set_name = str(event.args)
            try:
                async with ctx.client(api_key) as api:
                    await api.request("DELETE", f"/token_sets/{set_name}")
            except ApiError as exc:
                ui.notify(f"Not deleted: {printable(exc.message)}", type="negative")
            await load()

        create.on_click(submit)
        table.on("remove", remove)
        await load()
        return None


def _row(item: dict[str, Any], now_ms: int) -> dict[str, Any]:
    expires = item["expiresAt"]
    return {
        "key": item["name"],
        "name": printable(item["name"]),
        "available": item["available"],
        "total": item["total"],
        "created": ago(item["createdAt"], now_ms),
        "expires": "expired" if expires <= now_ms else f"in {(expires - now_ms) // 3_600_000} h",
    }


def _manager_url() -> str:
    """The manager's URL as this browser reached it (what devices on the same network use)."""
    request = ui.context.client.request
    return str(request.base_url).rstrip("/") if request is not None else "http://MANAGER:8080"


def _show_once(created: dict[str, Any], ca_pem: str, manager_url: str) -> None:
    tokens = [str(t) for t in created["tokens"]]
    with ui.dialog().props("persistent") as dialog, ui.card().classes("w-[48rem] max-w-full"):
        ui.label(f"{len(tokens)} tokens of set {printable(created['name'])}").classes(
            "text-lg font-bold"
        )
        ui.label("They are shown only now: copy them before closing.").classes("text-warning")
        ui.code("\n".join(tokens), language="text").props('data-testid="token-list"').classes(
            "w-full max-h-64 overflow-auto"
        )
        ui.label("On each device (one token per device), with this manager's CA as trust anchor:")
        ui.code(agent_command(manager_url, tokens[0]), language="bash").props(
            'data-testid="token-command"'
        ).classes("w-full")
        with ui.row():
            ui.button("Copy tokens", on_click=lambda: ui.clipboard.write("\n".join(tokens)))
            ui.button(
                "Download ca.pem",
                on_click=lambda: ui.download.content(ca_pem, "ca.pem", "application/x-pem-file"),
            ).props('data-testid="token-ca"')
            ui.button("Close", on_click=dialog.close).props('flat data-testid="token-close"')
    dialog.open()
