"""Sign-in with SSO: the OpenID Connect authorization code flow with PKCE (RFC 7636), the GUI
being a public client of the operator's identity provider.

``/ui/sso/start`` remembers a random ``state`` and PKCE verifier for this browser session and
sends the browser to the provider; ``/ui/sso/callback`` checks the ``state``, exchanges the
code (with the verifier) for tokens at the token URL, and signs the session in with the access
token (or the ID token) exactly as with a pasted one: ``GET /rpc/whoami`` must accept it, so
the manager's own OIDC verification (issuer, audience, signature, role claim) decides. The
``redirect_uri`` is built from the request; the provider accepts only the registered ones.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import app

from swarmdeploy.client import ApiError
from swarmdeploy.gui import MOUNT_PATH, SsoOptions
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.session import Operator

START = "/sso/start"
CALLBACK = "/sso/callback"
#: How long a started sign-in may take at the provider.
PENDING_S = 600.0
MAX_PENDING = 10_000


@dataclasses.dataclass(frozen=True)
class Pending:
    """A sign-in sent to the provider and not back yet."""

    state: str
    verifier: str
    redirect_uri: str
    started: float


def challenge(verifier: str) -> str:
    """The PKCE ``S256`` code challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(sso: SsoOptions, pending: Pending) -> str:
    """Where the browser is sent to sign in."""
    query = {
        "response_type": "code",
        "client_id": sso.client_id,
        "redirect_uri": pending.redirect_uri,
        "scope": "openid profile",
        "state": pending.state,
        "code_challenge": challenge(pending.verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in sso.authorize_url else "?"
    return f"{sso.authorize_url}{separator}{urlencode(query)}"


def register(ctx: GuiContext) -> None:
    """Declare the two routes (only when SSO is configured)."""
    sso: SsoOptions | None = ctx.options.sso
    if sso is None:
        return
    pending: dict[str, Pending] = {}

    @app.get(START, include_in_schema=False)
    async def start(request: Request) -> RedirectResponse:
        browser = str(request.session.get("id") or "")
        if not browser:
            return _back("cookies are needed to sign in")
        now = time.monotonic()
        for key in [k for k, p in pending.items() if now - p.started > PENDING_S]:
            del pending[key]
        if len(pending) >= MAX_PENDING:
            return _back("too many sign-ins under way; try again in a few minutes")
        base = str(request.base_url).rstrip("/")
        redirect_uri = (
            base + CALLBACK if base.endswith(MOUNT_PATH) else base + MOUNT_PATH + CALLBACK
        )
        ticket = Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(48), redirect_uri, now)
        pending[browser] = ticket
        return RedirectResponse(authorize_url(sso, ticket), status_code=303)

    @app.get(CALLBACK, include_in_schema=False)
    async def callback(
        request: Request, code: str = "", state: str = "", error: str = ""
    ) -> RedirectResponse:
        browser = str(request.session.get("id") or "")
        ticket = pending.pop(browser, None)
        if error:
            return _back(f"the identity provider answered: {error[:200]}")
        if ticket is None or time.monotonic() - ticket.started > PENDING_S:
            return _back("this sign-in was not started here or took too long; try again")
        if not hmac.compare_digest(state, ticket.state) or not code:
            return _back("the answer does not belong to this sign-in (state)")
        tokens = await _exchange(sso, ticket, code)
        if tokens is None:
            return _back("the identity provider did not give a token for the code")
        for token in (tokens.get("access_token"), tokens.get("id_token")):
            if isinstance(token, str) and token:
                try:
                    async with ctx.client(token) as api:
                        who = await api.request("GET", "/rpc/whoami")
                except ApiError:
                    continue
                operator = Operator(who["name"], who["role"], who["auditName"])
                ctx.sessions.sign_in(browser, token, operator)
                return RedirectResponse(MOUNT_PATH + "/devices", status_code=303)
        return _back("the manager does not accept the identity provider's tokens")


async def _exchange(sso: SsoOptions, ticket: Pending, code: str) -> dict[str, Any] | None:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": ticket.redirect_uri,
        "client_id": sso.client_id,
        "code_verifier": ticket.verifier,
    }
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            answer = await http.post(sso.token_url, data=form)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _back(reason: str) -> RedirectResponse:
    """Back to the sign-in page with ``reason`` (shown as text there)."""
    return RedirectResponse(f"{MOUNT_PATH}/signin?{urlencode({'error': reason})}", status_code=303)
