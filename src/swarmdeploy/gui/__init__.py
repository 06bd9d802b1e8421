"""The operator web GUI (seed 003 §3.2.3, §4.4), served by the manager process at ``/ui``.

Like the seed's GUI it "uses the external APIs of the Deployment Manager": every page reads and
writes through :class:`swarmdeploy.client.AsyncManagerClient` with the signed-in operator's own
credential, in process (an ``httpx.ASGITransport`` on the manager's ASGI app, no network
hop). The GUI has no private path into services, so the API's authentication, roles, validation
and audit apply unchanged, and every GUI feature is also an API feature.

:func:`mount` is called by ``swarmdeploy.entry`` when the manager starts with the GUI on
(``--no-gui`` turns it off, and then NiceGUI is never imported). NiceGUI keeps process-wide
state, so one process mounts the GUI once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from pathlib import Path
from typing import Any

MOUNT_PATH = "/ui"


@dataclasses.dataclass(frozen=True)
class SsoOptions:
    """Sign-in through an OpenID Connect provider (authorization code flow with PKCE)."""

    client_id: str
    authorize_url: str
    token_url: str


@dataclasses.dataclass(frozen=True)
class GuiOptions:
    """What the GUI needs from the manager's configuration."""

    data_dir: Path
    #: Map tile URL template (``{z}/{x}/{y}``); None: only the vendored country outlines.
    map_tiles: str | None = None
    map_attribution: str = ""
    #: "Sign in with SSO" on the sign-in page; None: API keys (or a pasted token) only.
    sso: SsoOptions | None = None


def mount(app: Any, options: GuiOptions) -> None:
    """Serve the GUI at ``/ui`` of the manager's FastAPI ``app`` and redirect ``/`` there."""
    # NiceGUI reads its storage folder at import time; keep it inside the data dir. The GUI
    # itself keeps nothing there: sessions (and the API keys they hold) live in memory only.
    os.environ.setdefault("NICEGUI_STORAGE_PATH", str(options.data_dir / "gui"))
    from fastapi.responses import RedirectResponse
    from nicegui import ui

    from swarmdeploy.gui.context import GuiContext
    from swarmdeploy.gui.pages import register

    register(GuiContext.for_app(app, options))
    # One line per in-process API call would double the access log.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def root() -> RedirectResponse:
        # A relative Location: never built from the Host header.
        return RedirectResponse(f"{MOUNT_PATH}/", status_code=307)

    app.add_api_route("/", root, include_in_schema=False)
    ui.run_with(
        app,
        mount_path=MOUNT_PATH,
        title="swarmdeploy",
        # Signs the cookie that names a browser session; sessions die with the process anyway.
        storage_secret=secrets.token_urlsafe(32),
        session_middleware_kwargs={"same_site": "strict", "https_only": False},
        show_welcome_message=False,
        reconnect_timeout=10.0,
    )
