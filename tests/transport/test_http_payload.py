"""Ranged payload downloads over the HTTP link (ADR 0013, docs/protocol.md §10): a real
manager link on uvicorn, real agent transports, a payload source standing in for the
manager's delivery. A download cut in the middle resumes where it stopped (bytes counted at
a loopback proxy), a partial file left by an agent restart is resumed from its length, and
the defences (authenticated, replay-proof, bound Range, sealed frames) each refuse."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.transport.harness import Harness

from swarmdeploy.agent.ranged import RangedTransfer, resume_point
from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Chunk, ChunkRequest, Error
from swarmdeploy.transport import http_wire as wire
from swarmdeploy.transport.base import LinkState
from swarmdeploy.transport.errors import PayloadRefused, TransportConfigError
from swarmdeploy.transport.http_agent import HttpAgentTransport
from swarmdeploy.transport.http_client import HttpClient, HttpFailure, HttpResponse
from swarmdeploy.transport.http_manager import HttpLinkConfig, HttpManagerTransport

CHUNK = 64 * 1024
TASK = "t-1"


class Source:
    """Serves one artifact of ``TASK`` to the targets in ``allowed`` (a fake delivery)."""

    def __init__(self, data: bytes, allowed: set[str]) -> None:
        self.data = data
        self.allowed = allowed
        self.info = ArtifactInfo(
            name="app.tar",
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            chunk_bytes=CHUNK,
        )

    async def artifact(self, target_id: str, task_id: str, sha256: str) -> ArtifactInfo | Error:
        if target_id not in self.allowed or task_id != TASK:
            return Error(code="not_authorized", message="not yours")
        if sha256 != self.info.sha256:
            return Error(code="unknown_artifact", message="no such artifact")
        return self.info

    async def chunk(self, target_id: str, msg: ChunkRequest) -> Chunk | Error:
        offset, length = self.info.chunk_span(msg.index)
        data = self.data[offset : offset + length]
        return Chunk(task_id=msg.task_id, sha256=msg.sha256, index=msg.index, data=data)


class GatedSource(Source):
    """A :class:`Source` whose chunks wait until ``gate`` opens: its downloads stay open."""

    def __init__(self, data: bytes, allowed: set[str]) -> None:
        super().__init__(data, allowed)
        self.gate = asyncio.Event()
        self.waiting = 0
        self._arrived = asyncio.Event()

    async def chunk(self, target_id: str, msg: ChunkRequest) -> Chunk | Error:
        self.waiting += 1
        self._arrived.set()
        await self.gate.wait()
        return await super().chunk(target_id, msg)

    async def held(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until ``count`` chunk reads are held at the gate."""
        async with asyncio.timeout(timeout_s):
            while self.waiting < count:
                self._arrived.clear()
                await self._arrived.wait()


def _link(hh: Harness) -> HttpManagerTransport:
    assert isinstance(hh.manager, HttpManagerTransport)
    return hh.manager


async def _agent(hh: Harness, target_id: str, *, via_proxy: bool = False) -> HttpAgentTransport:
    agent = await hh.agent(target_id, via_proxy=via_proxy)
    assert isinstance(agent, HttpAgentTransport)
    await agent.wait_state(LinkState.CONNECTED, timeout_s=5.0)
    return agent


def _serve(hh: Harness, size: int, allowed: set[str]) -> Source:
    source = Source(os.urandom(size), allowed)
    _link(hh).serve_payloads(source)
    return source


def _transfer(agent: HttpAgentTransport, source: Source, directory: Path) -> RangedTransfer:
    return RangedTransfer(
        TASK, [source.info], directory, agent, retry_s=0.05, paused=lambda: False, poll_s=0.05
    )


async def test_a_download_cut_in_the_middle_resumes_where_it_stopped(
    hh: Harness, tmp_path: Path
) -> None:
    size = 2 * 1024 * 1024 + 123
    source = _serve(hh, size, {"dl-1"})
    agent = await _agent(hh, "dl-1", via_proxy=True)
    proxy = hh.proxies["dl-1"]
    before = proxy.downstream_bytes
    proxy.cut_after = before + size * 6 // 10  # the line drops 60 % into the download
    [path] = await _transfer(agent, source, tmp_path).run()
    assert path.read_bytes() == source.data
    assert proxy.cut_after is None, "the line never dropped: the test tested nothing"
    # What came down the line: 60 % once, then the rest -- starting over would be 1.6x.
    assert proxy.downstream_bytes - before < 1.5 * size
    # The manager also wrote what sat in loopback socket buffers when the line dropped.
    assert _link(hh).payload_bytes_sent < 2 * size


async def test_a_partial_file_left_by_a_restart_is_resumed_from_its_length(
    hh: Harness, tmp_path: Path
) -> None:
    size = 10 * CHUNK + 5
    source = _serve(hh, size, {"dl-2"})
    agent = await _agent(hh, "dl-2")
    part = tmp_path / f"{source.info.sha256}.range"
    part.write_bytes(source.data[: 6 * CHUNK + 100])  # 6 chunks and a torn write
    [path] = await _transfer(agent, source, tmp_path).run()
    assert path.read_bytes() == source.data
    assert not part.exists()
    sealed = wire.sealed_size(size, CHUNK)
    assert _link(hh).payload_bytes_sent == sealed - wire.frame_start(6, CHUNK)


async def test_a_damaged_partial_file_fails_the_digest_and_is_fetched_again(
    hh: Harness, tmp_path: Path
) -> None:
    source = _serve(hh, 3 * CHUNK, {"dl-3"})
    agent = await _agent(hh, "dl-3")
    part = tmp_path / f"{source.info.sha256}.range"
    part.write_bytes(b"\0" * CHUNK)  # not what the manager sent: the SHA-256 catches it
    [path] = await _transfer(agent, source, tmp_path).run()
    assert path.read_bytes() == source.data


async def test_a_target_that_may_not_have_the_payload_is_refused(
    hh: Harness, tmp_path: Path
) -> None:
    source = _serve(hh, CHUNK, {"someone-else"})
    agent = await _agent(hh, "dl-4")
    with pytest.raises(PayloadRefused, match="not_authorized"):
        await agent.download(TASK, source.info, 0, lambda _: True)


async def test_a_payload_that_fails_in_the_middle_cuts_the_stream_after_whole_chunks(
    hh: Harness,
) -> None:
    source = _serve(hh, 5 * CHUNK, {"dl-9"})
    real_chunk = source.chunk

    async def failing(target_id: str, msg: ChunkRequest) -> Chunk | Error:
        if msg.index == 3:  # e.g. the blob turned out damaged on the manager
            return Error(code="unknown_artifact", message="damaged")
        return await real_chunk(target_id, msg)

    source.chunk = failing  # type: ignore[method-assign]
    agent = await _agent(hh, "dl-9")
    got: list[bytes] = []

    def keep(data: bytes) -> bool:
        got.append(data)
        return True

    with pytest.raises(OSError):
        await agent.download(TASK, source.info, 0, keep)
    assert got == [source.data[i * CHUNK : (i + 1) * CHUNK] for i in range(3)]
    assert await agent.wait_state(LinkState.CONNECTED, timeout_s=5.0) is LinkState.CONNECTED


def test_resume_points_are_whole_chunks() -> None:
    assert resume_point(1000, 100, 0) == 0
    assert resume_point(1000, 100, 250) == 200
    assert resume_point(1000, 100, 1000) == 1000
    assert resume_point(1000, 100, 1001) == 0


async def _raw_fetch(
    hh: Harness, agent: HttpAgentTransport, source: Source, **how: Any
) -> tuple[int, bytes, bytes]:
    """:func:`_raw_response` as ``(status, body, sealed request)``."""
    resp, sealed = await _raw_response(hh, agent, source, **how)
    return resp.status, resp.body, sealed


async def _raw_response(
    hh: Harness,
    agent: HttpAgentTransport,
    source: Source,
    *,
    range_header: str = "bytes=0-",
    tamper: Callable[[wire.LinkRequest], None] = lambda _: None,
    sealed: bytes | None = None,
) -> tuple[HttpResponse, bytes]:
    """One hand-made payload request as ``agent``: ``(response, sealed request)``."""
    if sealed is None:
        req = agent._request("fetch", task_id=TASK, sha256=source.info.sha256, range_start=0)
        tamper(req)
        sealed = wire.seal_request(req, agent._secret, agent._public, agent._manager_key)
    client = HttpClient(f"http://127.0.0.1:{hh._ports()[0]}", max_body_bytes=1 << 24)
    try:
        headers = {"Authorization": "SDH1 " + base64.urlsafe_b64encode(sealed).decode()}
        if range_header:
            headers["Range"] = range_header
        resp = await client.request("GET", "/agent/v1/payload", None, 10.0, headers=headers)
    finally:
        client.close()
    return resp, sealed


async def test_a_replayed_payload_request_is_refused(hh: Harness) -> None:
    source = _serve(hh, CHUNK, {"dl-5"})
    agent = await _agent(hh, "dl-5")
    status, body, sealed = await _raw_fetch(hh, agent, source)
    assert status == 206 and len(body) == CHUNK + wire.FRAME_OVERHEAD
    status, body, _ = await _raw_fetch(hh, agent, source, sealed=sealed)
    assert status == 409 and b"replayed" in body


async def test_a_range_header_changed_on_the_way_is_refused(hh: Harness) -> None:
    source = _serve(hh, 3 * CHUNK, {"dl-6"})
    agent = await _agent(hh, "dl-6")
    status, body, _ = await _raw_fetch(
        hh, agent, source, range_header=f"bytes={wire.frame_start(1, CHUNK)}-"
    )
    assert status == 400 and b"range_mismatch" in body


async def test_a_range_off_a_frame_boundary_is_refused(hh: Harness) -> None:
    source = _serve(hh, 3 * CHUNK, {"dl-7"})
    agent = await _agent(hh, "dl-7")

    def off(req: wire.LinkRequest) -> None:
        req.range_start = 5

    status, body, _ = await _raw_fetch(hh, agent, source, range_header="bytes=5-", tamper=off)
    assert status == 416 and b"bad_range" in body


async def test_a_request_without_a_valid_seal_is_refused(hh: Harness) -> None:
    source = _serve(hh, CHUNK, {"dl-8"})
    agent = await _agent(hh, "dl-8")
    status, body, _ = await _raw_fetch(hh, agent, source, sealed=b"SDH1" + os.urandom(300))
    assert status == 400 and b"bad_envelope" in body


async def test_one_agent_holds_only_a_few_payload_streams_at_once(hh: Harness) -> None:
    source = GatedSource(os.urandom(3 * CHUNK), {"dl-9", "dl-10"})
    _link(hh).serve_payloads(source)
    agent, other = await _agent(hh, "dl-9"), await _agent(hh, "dl-10")
    cap = _link(hh).config.max_payload_streams_per_target
    running = [
        asyncio.create_task(agent.download(TASK, source.info, 0, lambda _: True))
        for _ in range(cap)
    ]
    try:
        await source.held(cap)  # every stream is open, its headers out
        resp, _ = await _raw_response(hh, agent, source)
        assert resp.status == 429 and b"too_many_streams" in resp.body, resp.body
        assert int(resp.headers["retry-after"]) > 0
        assert _link(hh).refused["too_many_streams"] == 1
        with pytest.raises(HttpFailure) as busy:  # the agent's own request: the same wait
            await agent.download(TASK, source.info, 0, lambda _: True)
        assert busy.value.retry_after_s == int(resp.headers["retry-after"])
        theirs = asyncio.create_task(other.download(TASK, source.info, 0, lambda _: True))
        await source.held(cap + 1)  # another agent is not held back
    finally:
        source.gate.set()
    await asyncio.gather(*running, theirs)
    status, body, _ = await _raw_fetch(hh, agent, source)  # ended streams free their places
    assert status == 206 and len(body) == wire.sealed_size(3 * CHUNK, CHUNK)


class BusyOnce:
    """A range source that answers "busy, retry after 7 s" once, then serves ``data``."""

    def __init__(self, data: bytes) -> None:
        self.data, self.calls = data, 0

    async def download(
        self, task_id: str, info: ArtifactInfo, have: int, write: Callable[[bytes], bool]
    ) -> None:
        self.calls += 1
        if self.calls == 1:
            raise HttpFailure("payload download refused: HTTP 429", retry_after_s=7.0)
        for i in range(have // info.chunk_bytes, info.chunk_count):
            offset, length = info.chunk_span(i)
            write(self.data[offset : offset + length])


class RecordedNaps(RangedTransfer):
    """A :class:`RangedTransfer` that records its waits instead of waiting."""

    naps: list[float]

    async def _nap(self, seconds: float) -> None:
        self.naps.append(seconds)


async def test_a_busy_manager_s_retry_after_is_waited_before_the_next_request(
    tmp_path: Path,
) -> None:
    data = os.urandom(3 * CHUNK)
    source = Source(data, set())
    busy = BusyOnce(data)
    transfer = RecordedNaps(TASK, [source.info], tmp_path, busy, retry_s=0.05, paused=lambda: False)
    transfer.naps = []
    [path] = await transfer.run()
    assert path.read_bytes() == data and busy.calls == 2
    assert transfer.naps == [7.0]  # the manager's wait, not the 0.05 s back-off


def test_a_stream_cap_below_one_is_refused_naming_it() -> None:
    with pytest.raises(TransportConfigError, match="max_payload_streams_per_target"):
        HttpLinkConfig(generate_keypair(), max_payload_streams_per_target=0)


def test_a_frame_opens_only_at_its_place_and_for_its_agent() -> None:
    manager, agent, other = (os.urandom(32) for _ in range(3))
    from nacl.public import PrivateKey

    pub = {k: bytes(PrivateKey(k).public_key) for k in (manager, agent, other)}
    sha = "ab" * 32
    frame = wire.seal_frame(wire.payload_box(manager, pub[agent]), sha, CHUNK, b"x" * 100)
    mine = wire.payload_box(agent, pub[manager])
    assert wire.open_frame(mine, sha, CHUNK, frame) == b"x" * 100
    with pytest.raises(wire.EnvelopeError):
        wire.open_frame(mine, sha, 0, frame)  # moved to another place in the stream
    with pytest.raises(wire.EnvelopeError):
        wire.open_frame(mine, "cd" * 32, CHUNK, frame)  # another artifact
    with pytest.raises(wire.EnvelopeError):
        wire.open_frame(wire.payload_box(other, pub[manager]), sha, CHUNK, frame)
