"""Sign-in with an API key: checked by ``GET /rpc/whoami``, then bound to this browser session
in memory (``swarmdeploy.gui.session``)."""

from __future__ import annotations

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.pages.layout import HOME, SIGN_IN, absolute, browser_id, current_session
from swarmdeploy.gui.rows import printable
from swarmdeploy.gui.session import Operator


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/`` and ``/ui/signin``."""

    @ui.page("/")
    def home() -> RedirectResponse:
        return RedirectResponse(absolute(HOME if current_session(ctx) else SIGN_IN))

    @ui.page(SIGN_IN)
    def signin(error: str = "") -> None:
        ui.page_title("Sign in · swarmdeploy")
        with ui.card().classes("absolute-center w-96"):
            ui.label("swarmdeploy").classes("text-xl font-bold")
            ui.label("Sign in with an API key (or the bootstrap admin key).")
            key = (
                ui.input("API key", password=True).props('data-testid="api-key"').classes("w-full")
            )
            problem = ui.label(f"Sign-in refused: {printable(error)}" if error else "")
            problem.classes("text-negative").props('data-testid="signin-error"')

            async def submit() -> None:
                value = (key.value or "").strip()
                if not value:
                    problem.text = "Enter an API key."
                    return
                try:
                    async with ctx.client(value) as api:
                        who = await api.request("GET", "/rpc/whoami")
                except ApiError as exc:
                    problem.text = f"Sign-in refused: {printable(exc.message)}"
                    return
                identity = browser_id()
                if identity is None:
                    problem.text = "Cookies are needed to stay signed in."
                    return
                ctx.sessions.sign_in(
                    identity, value, Operator(who["name"], who["role"], who["auditName"])
                )
                ui.navigate.to(HOME)

            key.on("keydown.enter", submit)
            ui.button("Sign in", on_click=submit).props('data-testid="signin"')
            if ctx.options.sso is not None:
                ui.separator()
                ui.button("Sign in with SSO", on_click=lambda: ui.navigate.to("/sso/start")).props(
                    'outline data-testid="signin-sso"'
                )
