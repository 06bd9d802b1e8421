"""The defences of the HTTP link (ADR 0013), each against a real manager on loopback: sealed
requests made by hand, replayed, reordered, tampered with, sealed for or by the wrong key,
and a deleted target's next request."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from nacl.public import Box, PrivateKey, PublicKey
from tests.transport.harness import TIMEOUT_S, Harness

from swarmdeploy.crypto.curve import CurveKeyPair, generate_keypair
from swarmdeploy.protocol.messages import Hello, Welcome, encode
from swarmdeploy.transport import http_wire as wire
from swarmdeploy.transport.http_agent import LINK_PATH, _refusal
from swarmdeploy.transport.http_client import HttpClient, HttpResponse
from swarmdeploy.transport.http_manager import HttpManagerTransport

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Device:
    """A hand-driven agent: seals requests itself so that tests can replay and forge them."""

    def __init__(self, hh: Harness, target_id: str, keys: CurveKeyPair) -> None:
        assert hh.server is not None
        self.target_id = target_id
        self.secret = wire.raw_key(keys.secret)
        self.public = wire.raw_key(keys.public)
        self.manager_key = wire.raw_key(hh.manager_keys.public)
        self.client = HttpClient(
            f"http://127.0.0.1:{hh.server.port}", max_body_bytes=1 << 22, keep_alive=False
        )
        self.session = b""

    def seal(self, channel: str, counter: int, **fields: object) -> tuple[wire.LinkRequest, bytes]:
        req = wire.LinkRequest(
            target=self.target_id, channel=channel, session=self.session, counter=counter,
            **fields,  # type: ignore[arg-type]
        )  # fmt: skip
        return req, wire.seal_request(req, self.secret, self.public, self.manager_key)

    async def post(self, body: bytes) -> HttpResponse:
        return await self.client.post(LINK_PATH, body, TIMEOUT_S)

    async def open(self) -> None:
        req, body = self.seal("open", 1)
        resp = await self.post(body)
        assert resp.status == 200, resp.body
        self.session = wire.open_response(resp.body, self.secret, self.manager_key, req).session


def code_of(resp: HttpResponse) -> str:
    return str(json.loads(resp.body)["code"])


async def device(hh: Harness, target_id: str = "dev-1") -> Device:
    keys = generate_keypair()
    await hh.manager.allow(target_id, keys.public)
    d = Device(hh, target_id, keys)
    await d.open()
    return d


async def test_a_sealed_hello_arrives_from_the_key_owner(hh: Harness) -> None:
    d = await device(hh)
    _, body = d.seal("send", 1, messages=[encode(Hello(boot_id="b1"))])
    assert (await d.post(body)).status == 200
    assert await hh.manager.recv(timeout_s=TIMEOUT_S) == ("dev-1", Hello(boot_id="b1"))


async def test_a_replayed_request_is_refused_409(hh: Harness) -> None:
    d = await device(hh)
    _, body = d.seal("send", 1, messages=[encode(Hello(boot_id="once"))])
    assert (await d.post(body)).status == 200
    assert await hh.manager.recv(timeout_s=TIMEOUT_S) == ("dev-1", Hello(boot_id="once"))
    again = await d.post(body)
    assert (again.status, code_of(again)) == (409, "replayed")
    assert await hh.manager.recv(timeout_s=0.3) is None


async def test_a_reordered_request_is_refused_409(hh: Harness) -> None:
    d = await device(hh)
    _, later = d.seal("send", 5, messages=[encode(Hello(boot_id="5"))])
    _, earlier = d.seal("send", 4, messages=[encode(Hello(boot_id="4"))])
    assert (await d.post(later)).status == 200
    assert (await d.post(earlier)).status == 409
    assert await hh.manager.recv(timeout_s=TIMEOUT_S) == ("dev-1", Hello(boot_id="5"))
    assert await hh.manager.recv(timeout_s=0.3) is None


async def test_a_replay_after_the_session_is_gone_is_refused_401(hh: Harness) -> None:
    d = await device(hh)
    _, body = d.seal("send", 1, messages=[encode(Hello())])
    await hh.manager.revoke("dev-1")
    await hh.manager.allow("dev-1", msgspec_key(d))  # same key again: the session is gone
    resp = await d.post(body)
    assert (resp.status, code_of(resp)) == (401, "session_unknown")


def msgspec_key(d: Device) -> str:
    from zmq.utils import z85

    return z85.encode(d.public).decode("ascii")


async def test_every_tampered_byte_is_refused(hh: Harness) -> None:
    d = await device(hh)
    _, body = d.seal("send", 1, messages=[encode(Hello(boot_id="t"))])
    for i in (len(wire.MAGIC), len(wire.MAGIC) + 40, len(body) // 2, len(body) - 1):
        forged = bytearray(body)
        forged[i] ^= 0x01
        resp = await d.post(bytes(forged))
        assert resp.status in (400, 403), (i, resp.status)
    assert await hh.manager.recv(timeout_s=0.3) is None


async def test_a_request_sealed_for_another_manager_is_refused_400(hh: Harness) -> None:
    d = await device(hh)
    d.manager_key = wire.raw_key(generate_keypair().public)
    _, body = d.seal("send", 1, messages=[encode(Hello())])
    resp = await d.post(body)
    assert (resp.status, code_of(resp)) == (400, "bad_envelope")


async def test_an_unknown_key_is_refused_403(hh: Harness) -> None:
    stranger = Device(hh, "stranger", generate_keypair())
    _, body = stranger.seal("open", 1)
    resp = await stranger.post(body)
    assert (resp.status, code_of(resp)) == (403, "unknown_key")


async def test_a_forged_inner_box_under_an_allowed_key_is_refused_403(hh: Harness) -> None:
    d = await device(hh)
    forger = PrivateKey.generate()  # seals the inner box, but names d's key outside
    req = wire.LinkRequest(target="dev-1", channel="send", session=d.session, counter=1,
                           messages=[encode(Hello(boot_id="forged"))])  # fmt: skip
    inner = Box(forger, PublicKey(d.manager_key)).encrypt(msgspec.msgpack.encode(req))
    eph = PrivateKey.generate()
    outer = Box(eph, PublicKey(d.manager_key)).encrypt(
        msgspec.msgpack.encode([d.public, bytes(inner)])
    )
    resp = await d.post(wire.MAGIC + bytes(eph.public_key) + bytes(outer))
    assert (resp.status, code_of(resp)) == (403, "bad_signature")
    assert await hh.manager.recv(timeout_s=0.3) is None


async def test_a_deleted_targets_next_request_is_refused_403(hh: Harness) -> None:
    d = await device(hh)
    await hh.manager.revoke("dev-1")
    _, body = d.seal("poll", 1, wait_s=0.0)
    resp = await d.post(body)
    assert (resp.status, code_of(resp)) == (403, "unknown_key")


async def test_bodies_are_confidential(hh: Harness) -> None:
    d = await device(hh)
    await hh.manager.recv(timeout_s=0.01)
    _, body = d.seal("send", 1, messages=[encode(Hello(boot_id="secret-boot-id"))])
    for clear in (b"secret-boot-id", b"dev-1", d.public):
        assert clear not in body
    assert (await d.post(body)).status == 200
    assert await hh.manager.send("dev-1", Welcome(log_acked_seq=424242))
    req, body = d.seal("poll", 1, wait_s=1.0)
    resp = await d.post(body)
    assert b"424242" not in resp.body and encode(Welcome(log_acked_seq=424242)) not in resp.body
    opened = wire.open_response(resp.body, d.secret, d.manager_key, req)
    assert opened.messages == [encode(Welcome(log_acked_seq=424242))]


async def test_the_agent_refuses_a_response_to_another_request_or_by_another_key(
    hh: Harness,
) -> None:
    d = await device(hh)
    req, body = d.seal("poll", 1, wait_s=0.0)
    resp = await d.post(body)
    other = wire.LinkRequest(target="dev-1", channel="poll", session=d.session, counter=2)
    with pytest.raises(wire.EnvelopeError):
        wire.open_response(resp.body, d.secret, d.manager_key, other)
    fake = wire.seal_response(
        wire.LinkResponse(session=d.session, channel="poll", counter=1),
        wire.raw_key(generate_keypair().secret),
        d.public,
    )
    with pytest.raises(wire.EnvelopeError):
        wire.open_response(fake, d.secret, d.manager_key, req)


async def test_too_many_openings_get_503_with_retry_after() -> None:
    from tests.transport.harness import HttpServer

    from swarmdeploy.transport.http_manager import HttpLinkConfig, HttpManagerTransport

    keys = generate_keypair()
    http = HttpManagerTransport(HttpLinkConfig(keys=keys, opens_per_s=0.01, open_burst=1))
    await http.start()
    server = HttpServer(http)
    await server.start()
    hh = Harness("http", http, keys, server=server)
    try:
        d = await device(hh)  # takes the one token
        _, body = d.seal("open", 2)
        resp = await d.post(body)
        assert (resp.status, code_of(resp)) == (503, "busy")
        delay = _refusal(resp).delay_s
        assert delay is not None and delay >= 10
    finally:
        await hh.close()


def test_envelope_structs_round_trip() -> None:
    req = wire.LinkRequest(target="t", channel="poll", counter=3, topics=[b"ID-t\x00"])
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(req), type=wire.LinkRequest) == req


async def test_a_restarted_agents_messages_go_to_its_new_session_not_the_old_poll(
    hh: Harness,
) -> None:
    keys = generate_keypair()
    await hh.manager.allow("dev-1", keys.public)
    old, new = Device(hh, "dev-1", keys), Device(hh, "dev-1", keys)
    await old.open()
    old_req, old_body = old.seal("poll", 1, wait_s=5.0)
    parked = asyncio.create_task(old.post(old_body))  # the old process's poll, still parked
    await new.open()
    _, hello = new.seal("send", 1, messages=[encode(Hello(boot_id="new"))])
    assert (await new.post(hello)).status == 200
    assert await hh.manager.recv(timeout_s=TIMEOUT_S) == ("dev-1", Hello(boot_id="new"))
    assert await hh.manager.send("dev-1", Welcome(log_acked_seq=5))
    req, body = new.seal("poll", 1, wait_s=5.0)
    got = wire.open_response((await new.post(body)).body, new.secret, new.manager_key, req)
    assert got.messages == [encode(Welcome(log_acked_seq=5))]
    stale = await parked
    assert wire.open_response(stale.body, old.secret, old.manager_key, old_req).messages == []


async def test_a_drain_answers_parked_polls_at_once_and_refuses_new_ones_503(hh: Harness) -> None:
    """A stopping manager answers its parked long-polls (the web server's graceful shutdown
    would otherwise wait them out) and refuses new requests with Retry-After, without telling
    the agent that its key is unknown."""
    d = await device(hh)
    _, body = d.seal("poll", 1, wait_s=20.0)
    parked = asyncio.create_task(d.post(body))
    http = hh.manager
    assert isinstance(http, HttpManagerTransport)
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while http._parked == 0:  # the poll is parked
        assert asyncio.get_running_loop().time() < deadline, "the poll never parked"
        await asyncio.sleep(0.01)
    http.drain()
    answered = await asyncio.wait_for(parked, TIMEOUT_S)  # not after the 20 s wait
    assert answered.status == 200
    _, again = d.seal("poll", 2, wait_s=20.0)
    refused = await d.post(again)
    assert (refused.status, code_of(refused)) == (503, "unavailable")
    assert refused.headers.get("retry-after") == "5"
