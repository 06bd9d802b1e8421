"""The ZAP handler's answers (RFC 27), without sockets."""

from __future__ import annotations

import zmq.asyncio
from zmq.utils import z85

from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.transport.zap import ZapHandler

KEY = generate_keypair().public


def _handler() -> tuple[ZapHandler, zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    return ZapHandler(ctx, {KEY: "dev-1"}.get), ctx


def _request(
    mechanism: bytes = b"CURVE", key: str = KEY, domain: bytes = b"swarmdeploy"
) -> list[bytes]:
    return [b"1.0", b"7", domain, b"10.0.0.9", b"", mechanism, z85.decode(key)]


def test_known_key_is_accepted_with_its_target_as_user_id() -> None:
    handler, ctx = _handler()
    try:
        assert handler.answer(_request()) == [b"1.0", b"7", b"200", b"OK", b"dev-1", b""]
    finally:
        ctx.term()


def test_everything_else_is_refused_with_400() -> None:
    handler, ctx = _handler()
    try:
        refused = [
            _request(key=generate_keypair().public),
            _request(mechanism=b"PLAIN"),
            _request(domain=b"other"),
            [b"0.9", *_request()[1:]],
            _request()[:6],  # no credentials
            [b"1.0", b"7", b"swarmdeploy", b"x", b"", b"CURVE", b"short"],
        ]
        for request in refused:
            reply = handler.answer(request)
            assert reply[:3] == [b"1.0", b"7", b"400"] and reply[4] == b"", request
        assert handler.answer([b"1.0"])[2] == b"400"  # malformed, still answered
    finally:
        ctx.term()
