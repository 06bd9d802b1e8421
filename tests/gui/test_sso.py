"""Sign-in with SSO in Chromium: the authorization code flow with PKCE against a small
OpenID Connect provider on loopback; the manager's own OIDC checks decide."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from tests.cli.manager_proc import free_port, running_manager

ISSUER = "https://idp.example.test/realms/fleet"
AUDIENCE = "swarmdeploy"
CLIENT = "swarmdeploy-gui"


class Provider:
    """Authorize (auto-approves "carol"), token (checks code, client, redirect and PKCE), JWKS."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (challenge, redirect_uri)
        self.exchanges = 0
        provider = self
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/jwks":
                    self._send(200, jwks)
                elif url.path == "/authorize":
                    ok = (query.get("client_id") == CLIENT and query.get("response_type") == "code"
                          and query.get("code_challenge_method") == "S256")  # fmt: skip
                    if not ok:
                        self._send(400, b"bad authorization request")
                        return
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = (query["code_challenge"], query["redirect_uri"])
                    answer = urlencode({"code": code, "state": query["state"]})
                    back = f"{query['redirect_uri']}?{answer}"
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.end_headers()
                else:
                    self._send(404, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                challenge, redirect_uri = provider.codes.pop(form.get("code", ""), ("", ""))
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                pkce = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                valid = (challenge and pkce == challenge and form.get("client_id") == CLIENT
                         and form.get("redirect_uri") == redirect_uri)  # fmt: skip
                if not valid:
                    self._send(400, b'{"error": "invalid_grant"}')
                    return
                provider.exchanges += 1
                self._send(
                    200,
                    json.dumps({"access_token": provider.token(), "token_type": "Bearer"}).encode(),
                )

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def token(self) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-7", "preferred_username": "carol",
                  "roles": ["fleet-ops"], "iat": now, "exp": now + 600}  # fmt: skip
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    idp = Provider()
    thread = threading.Thread(target=idp.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        idp.server.shutdown()
        idp.server.server_close()


@pytest.fixture(scope="module")
def sso_manager(
    tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> Iterator[tuple[str, str]]:
    args = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]
    args += ["--oidc-issuer", ISSUER, "--oidc-jwks-url", f"{provider.url}/jwks"]
    args += ["--oidc-audience", AUDIENCE, "--oidc-role-map", "fleet-ops=operator"]
    args += ["--oidc-client-id", CLIENT, "--oidc-authorize-url", f"{provider.url}/authorize"]
    args += ["--oidc-token-url", f"{provider.url}/token"]
    with running_manager(tmp_path_factory.mktemp("sso"), *args) as running:
        yield running


def test_sso_signs_in_through_the_provider_with_the_role_its_claims_map_to(
    page: Any, sso_manager: tuple[str, str], provider: Provider
) -> None:
    base, _ = sso_manager
    page.goto(f"{base}/ui/signin")
    page.get_by_test_id("signin-sso").click()
    expect(page).to_have_url(re.compile("/ui/devices$"))
    expect(page.get_by_test_id("whoami")).to_have_text("carol (operator)")
    assert provider.exchanges >= 1
    expect(page.get_by_test_id("nav-Keys")).to_have_count(0)  # operator, not admin


def test_a_callback_that_this_browser_did_not_start_is_refused(
    page: Any, sso_manager: tuple[str, str]
) -> None:
    base, _ = sso_manager
    page.goto(f"{base}/ui/sso/callback?code=stolen&state=forged")
    expect(page).to_have_url(re.compile("/ui/signin"))
    expect(page.get_by_test_id("signin-error")).to_contain_text("not started here")
    page.goto(f"{base}/ui/devices")
    expect(page).to_have_url(re.compile("/ui/signin$"))


def test_sso_settings_must_come_complete() -> None:
    from swarmdeploy.manager.settings import SettingsError, load_settings

    with pytest.raises(SettingsError):
        load_settings(data_dir="/tmp/x", oidc_client_id="gui")
