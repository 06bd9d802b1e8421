"""Keys (admin): API keys (create, shown once; revoke), operator signing keys (generate for
the signed-in operator, revoke) and the deployment CA certificate the agents trust."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError, AsyncManagerClient
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.pages.layout import KEYS, open_page
from swarmdeploy.gui.rows import ago, printable
from swarmdeploy.gui.session import Session

API_COLUMNS: list[dict[str, Any]] = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "role", "label": "Role", "field": "role", "align": "left"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "used", "label": "Last used", "field": "used", "align": "left"},
    {"name": "id", "label": "Id", "field": "id", "align": "left"},
]
SIGNING_COLUMNS: list[dict[str, Any]] = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "owner", "label": "Owner", "field": "owner", "align": "left"},
    {"name": "role", "label": "Role", "field": "role", "align": "left"},
    {"name": "serial", "label": "Serial", "field": "serial", "align": "right"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left"},
    {"name": "id", "label": "Id", "field": "id", "align": "left"},
]
REVOKE_SLOT = """<q-td :props="props">{{ props.value }}
  <q-btn v-if="!props.row.revoked" flat dense size="sm" color="negative" label="revoke"
    :data-testid="'%s-revoke-' + props.row.key" @click="$parent.$emit('revoke', props.row.key)" />
</q-td>"""


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/keys``."""

    @ui.page(KEYS)
    async def keys() -> RedirectResponse | None:
        session = open_page(ctx, "Keys", "admin", "Keys need the admin role.")
        if not isinstance(session, Session):
            return session
        await KeysPage(ctx, session.api_key).load()
        return None


class KeysPage:
    """The three sections of the keys page."""

    def __init__(self, ctx: GuiContext, api_key: str) -> None:
        self.ctx = ctx
        self.api_key = api_key
        ui.label("API keys").classes("text-md font-bold")
        with ui.row().classes("items-end"):
            self.name = ui.input("Name").props('data-testid="apikey-name"')
            self.role = ui.select(["viewer", "operator", "admin"], value="viewer", label="Role")
            self.role.props('data-testid="apikey-role"')
            ui.button("Create", on_click=self.create_api_key).props('data-testid="apikey-create"')
        self.api_table = ui.table(columns=API_COLUMNS, rows=[], row_key="key").classes("w-full")
        self.api_table.props('data-testid="apikey-table"')
        self.api_table.add_slot("body-cell-id", REVOKE_SLOT % "apikey")
        self.api_table.on("revoke", self.revoke_api_key)
        ui.label("Operator signing keys").classes("text-md font-bold mt-4")
        ui.button("Generate a signing key for me", on_click=self.generate).props(
            'flat data-testid="signing-generate"'
        )
        self.signing = ui.table(columns=SIGNING_COLUMNS, rows=[], row_key="key").classes("w-full")
        self.signing.props('data-testid="signing-table"')
        self.signing.add_slot("body-cell-id", REVOKE_SLOT % "signing")
        self.signing.on("revoke", self.revoke_signing_key)
        ui.label("Deployment CA (the agents' --trust-anchor)").classes("text-md font-bold mt-4")
        self.ca = ui.column().props('data-testid="ca-info"')

    def client(self) -> AsyncManagerClient:
        return self.ctx.client(self.api_key)

    async def load(self) -> None:
        """Read the three lists."""
        try:
            async with self.client() as api:
                api_keys = await api.request("GET", "/api_keys")
                signing = await api.request("GET", "/operator_keys")
                ca = await api.request("GET", "/ca")
        except ApiError as exc:
            ui.notify(f"Cannot read keys: {printable(exc.message)}", type="negative")
            return
        now_ms = int(time.time() * 1000)
        self.api_table.rows = [
            {"key": k["id"], "id": k["id"], "name": printable(k["name"]), "role": k["role"],
             "created": ago(k["createdAt"], now_ms), "used": ago(k.get("lastUsedAt"), now_ms),
             "revoked": False}
            for k in api_keys["items"]
        ]  # fmt: skip
        self.api_table.update()
        self.signing.rows = [
            {"key": k["id"], "id": k["id"], "name": printable(k["name"]),
             "owner": printable(k["owner"]), "role": k["role"], "serial": k["serial"],
             "created": ago(k["createdAt"], now_ms), "revoked": k["revokedAt"] is not None,
             "status": "revoked" if k["revokedAt"] is not None else "valid"}
            for k in signing["items"]
        ]  # fmt: skip
        self.signing.update()
        self.ca.clear()
        with self.ca:
            ui.label(f"fingerprint {ca['fingerprint']}")
            ui.label(f"key {ca['keyFingerprint']}")
            ui.label(f"valid until {ca['notAfter']}")
            ui.button(
                "Download ca.pem",
                on_click=lambda: ui.download.content(ca["certificate"], "ca.pem"),
            ).props("flat")

    async def _call(self, what: str, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self.client() as api:
                return await api.request(method, path, json=body)
        except ApiError as exc:
            ui.notify(f"{what}: {printable(str(exc))}", type="negative")
            return None

    async def create_api_key(self) -> None:
        body = {"name": (self.name.value or "").strip(), "role": self.role.value}
        created = await self._call("Not created", "POST", "/api_keys", body)
        if created is None:
            return
        with ui.dialog().props("persistent") as dialog, ui.card():
            ui.label(f"API key {printable(created['name'])} ({created['role']})").classes(
                "font-bold"
            )
            ui.label("Shown only now: copy it before closing.").classes("text-warning")
            ui.code(created["key"], language="text").props('data-testid="apikey-secret"')
            ui.button("Close", on_click=dialog.close).props('data-testid="apikey-close"')
        dialog.open()
        self.name.value = ""
        await self.load()

    async def revoke_api_key(self, event: Any) -> None:
        await self._call("Not revoked", "DELETE", f"/api_keys/{event.args}")
        await self.load()

    async def generate(self) -> None:
        if await self._call("Not generated", "POST", "/operator_keys", {}) is not None:
            ui.notify("Signing key generated")
        await self.load()

    async def revoke_signing_key(self, event: Any) -> None:
        await self._call("Not revoked", "DELETE", f"/operator_keys/{event.args}")
        await self.load()
