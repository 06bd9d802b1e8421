"""A tiny registration endpoint (``POST /rpc/targets``) on 127.0.0.1 for agent tests.

It answers from a script of planned responses (status, headers, JSON body) and records every
request. :func:`registration_answer` builds a valid 201 body with a real Ed25519 CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from swarmdeploy.crypto.ca import CertificateAuthority, create_ca


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Script:
    """Planned answers (the last one repeats) and the recorded requests."""

    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    #: ``GET /rpc/server_info`` requests seen (answered from the first 201 body).
    info_requests: int = 0


def registration_answer(
    target_id: str, manager_public_key: str, ca: CertificateAuthority, ports: tuple[int, int]
) -> dict[str, Any]:
    """A 201 body as ``swarmdeploy.manager.api.rpc.register_target`` answers it."""
    return {
        "zeromq": {"publicKey": manager_public_key, "pubPort": ports[1], "subPort": ports[0]},
        "caCertificate": ca.cert_pem().decode(),
        "caPublicKey": base64.b64encode(ca.public_key_raw).decode(),
        "version": "test",
        "id": target_id,
        "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "signature": base64.b64encode(b"s" * 64).decode(),
    }


def new_ca() -> CertificateAuthority:
    return create_ca("test manager CA", now=dt.datetime.now(dt.UTC))


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            script.requests.append(Recorded(self.path, dict(self.headers.items()), body))
            index = min(len(script.requests), len(script.answers)) - 1
            status, headers, answer = script.answers[index]
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            script.info_requests += 1
            found = [a for status, _, a in script.answers if status == 201 and "caCertificate" in a]
            if self.path != "/rpc/server_info" or not found:
                status, info = 404, {"error": "not found"}
            else:
                keys = ("zeromq", "caCertificate", "caPublicKey", "version")
                status, info = 200, {k: found[0][k] for k in keys}
            data = json.dumps(info).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def registration_server(script: Script) -> Iterator[str]:
    """Serve ``script`` on 127.0.0.1; yields the manager URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
