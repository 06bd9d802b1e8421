"""The frame of every signed-in page: header with navigation, who is signed in, sign-out."""

from __future__ import annotations

from fastapi.responses import RedirectResponse
from nicegui import app, ui

from swarmdeploy.gui import MOUNT_PATH
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.rows import printable
from swarmdeploy.gui.session import Session

#: Page paths are relative to the mount point (NiceGUI adds ``/ui`` to links and navigation);
#: a ``RedirectResponse`` needs :func:`absolute`.
SIGN_IN = "/signin"
HOME = "/devices"
TOKENS = "/tokens"
DEPLOYMENTS = "/deployments"
NEW_DEPLOYMENT = "/deployments/new"
MAP = "/map"
LOGS = "/logs"
#: Floor-plan images for the map (the API's image route needs a bearer header an <img> lacks).
FLOORPLAN_IMAGE = "/floorplan-image"
KEYS = "/keys"
APPS = "/apps"
#: (label, path, role needed to see the link)
NAV = (
    ("Devices", HOME, "viewer"),
    ("Map", MAP, "viewer"),
    ("Deployments", DEPLOYMENTS, "viewer"),
    ("Apps", APPS, "viewer"),
    ("Logs", LOGS, "viewer"),
    ("Tokens", TOKENS, "admin"),
    ("Keys", KEYS, "admin"),
)


def absolute(path: str) -> str:
    """``path`` under the mount point, for HTTP redirects."""
    return MOUNT_PATH + path


def browser_id() -> str | None:
    """The id of this browser session (NiceGUI's signed cookie), or None."""
    value = app.storage.browser.get("id")
    return str(value) if value else None


def current_session(ctx: GuiContext) -> Session | None:
    """The signed-in session of this browser, or None."""
    return ctx.sessions.get(browser_id())


def frame(ctx: GuiContext, session: Session, title: str) -> None:
    """Header, navigation and the sign-out button."""
    with ui.header().classes("items-center justify-between bg-slate-800"):
        with ui.row().classes("items-center gap-6"):
            ui.label("swarmdeploy").classes("text-lg font-bold")
            for label, href, role in NAV:
                if session.operator.allows(role):
                    ui.link(label, href).classes("text-white").props(f'data-testid="nav-{label}"')
        with ui.row().classes("items-center gap-3"):
            ui.label(f"{printable(session.operator.name)} ({session.operator.role})").props(
                'data-testid="whoami"'
            )

            def sign_out() -> None:
                ctx.sessions.sign_out(browser_id())
                ui.navigate.to(SIGN_IN)

            ui.button("Sign out", on_click=sign_out).props('flat color=white data-testid="signout"')
    ui.page_title(f"{title} · swarmdeploy")


def open_page(
    ctx: GuiContext, title: str, role: str = "viewer", refusal: str = ""
) -> Session | RedirectResponse | None:
    """The start of every signed-in page: a redirect to sign-in without a session; the frame;
    then the session, or ``None`` after showing ``refusal`` when the role is below ``role``
    (the API would refuse that page's calls anyway)."""
    session = current_session(ctx)
    if session is None:
        return RedirectResponse(absolute(SIGN_IN))
    frame(ctx, session, title)
    if not session.operator.allows(role):
        ui.label(refusal or f"This page needs the {role} role.").props('data-testid="no-access"')
        return None
    return session
