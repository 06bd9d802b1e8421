"""What every page needs: the sessions, an API client per session, the options."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from swarmdeploy.client import AsyncManagerClient
from swarmdeploy.gui.session import SessionStore

#: Base URL of in-process requests; the host name is never resolved (ASGI transport).
IN_PROCESS_URL = "http://manager.invalid"


@dataclasses.dataclass
class GuiContext:
    """Shared by all pages of one mounted GUI."""

    app: Any  # the manager's ASGI application
    transport: httpx.AsyncBaseTransport
    options: Any  # swarmdeploy.gui.GuiOptions
    sessions: SessionStore = dataclasses.field(default_factory=SessionStore)

    @classmethod
    def for_app(cls, app: Any, options: Any) -> GuiContext:
        """A context whose API calls go straight into ``app`` (the manager's ASGI app)."""
        return cls(app=app, transport=httpx.ASGITransport(app=app), options=options)

    def client(self, api_key: str | None) -> AsyncManagerClient:
        """A client of the public API that authenticates as ``api_key``."""
        return AsyncManagerClient(IN_PROCESS_URL, api_key, transport=self.transport)
