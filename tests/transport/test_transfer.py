"""Chunked payload transfer pulled by the agent, resumed after the link is cut in the middle
(docs/protocol.md §6.5). A tiny manager loop serves chunks from a blob file on demand; the
full agent/manager logic builds on the same messages."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pathlib

from tests.transport.harness import Harness

from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Chunk, ChunkRequest, Hello, Welcome
from swarmdeploy.transport.base import AgentTransport, LinkEvent, LinkState, ManagerTransport

SIZE = 5 * 1024 * 1024
CHUNK = 128 * 1024
WINDOW = 4
CUT_AFTER = 15  # chunks received before the link is cut
RESEND_AFTER_S = 1.0


async def _serve_chunks(
    manager: ManagerTransport, blob: pathlib.Path, art: ArtifactInfo, counts: dict[str, int]
) -> None:
    """The manager side: answer hello and chunk requests, reading one chunk at a time."""
    while True:
        got = await manager.recv()
        if got is None:
            continue
        target, msg = got
        if isinstance(msg, Hello):
            await manager.send(target, Welcome())
        elif isinstance(msg, ChunkRequest):
            counts["served"] += 1
            offset, length = art.chunk_span(msg.index)
            with blob.open("rb") as f:  # bounded memory: never the whole artifact
                f.seek(offset)
                data = f.read(length)
            reply = Chunk(task_id=msg.task_id, sha256=msg.sha256, index=msg.index, data=data)
            await manager.send(target, reply)


class _Puller:
    """The agent side: keeps WINDOW requests outstanding, writes chunks at their offsets,
    forgets outstanding requests when the link drops and says hello when it is back."""

    def __init__(self, h: Harness, agent: AgentTransport, art: ArtifactInfo, out: pathlib.Path):
        self.h, self.agent, self.art, self.out = h, agent, art, out
        self.have: set[int] = set()
        self.outstanding: dict[int, float] = {}
        self.requests = 0
        self.events: list[LinkState] = []

    async def _request_more(self) -> None:
        now = asyncio.get_running_loop().time()
        for index in range(self.art.chunk_count):
            if len(self.outstanding) >= WINDOW:
                return
            if index in self.have or index in self.outstanding:
                continue
            req = ChunkRequest(task_id="t1", sha256=self.art.sha256, index=index)
            if not await self.agent.send(req):
                return
            self.outstanding[index] = now
            self.requests += 1

    async def _on(self, item: object) -> None:
        if isinstance(item, Chunk) and item.index not in self.have:
            offset, _ = self.art.chunk_span(item.index)
            with self.out.open("r+b") as f:
                f.seek(offset)
                f.write(item.data)
            self.have.add(item.index)
            self.outstanding.pop(item.index, None)
            if len(self.have) == CUT_AFTER:
                await self.h.cut("dev-1")
        elif isinstance(item, LinkEvent):
            self.events.append(item.state)
            if item.state is LinkState.CONNECTING:
                self.outstanding.clear()  # lost with the connection
            elif item.state is LinkState.CONNECTED:
                await self.agent.send(Hello(boot_id="dev-1"))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while len(self.have) < self.art.chunk_count:
            await self._request_more()
            await self._on(await self.agent.recv(timeout_s=0.2))
            stale = [i for i, t in self.outstanding.items() if loop.time() - t > RESEND_AFTER_S]
            for index in stale:
                del self.outstanding[index]


async def test_five_megabyte_transfer_resumes_after_a_cut_link(
    harness: Harness, tmp_path: pathlib.Path
) -> None:
    payload = os.urandom(SIZE)
    blob = tmp_path / "blob"
    blob.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    art = ArtifactInfo(name="source.zip", sha256=digest, size_bytes=SIZE, chunk_bytes=CHUNK)
    counts = {"served": 0}
    server = asyncio.create_task(_serve_chunks(harness.manager, blob, art, counts))
    try:
        agent = await harness.agent("dev-1", via_proxy=True)
        out = tmp_path / "partial"
        out.write_bytes(b"")
        with out.open("r+b") as f:
            f.truncate(SIZE)
        puller = _Puller(harness, agent, art, out)
        async with asyncio.timeout(30):
            await puller.run()
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest  # verified per artifact
    assert puller.events.count(LinkState.CONNECTED) >= 2  # the link really was cut
    assert LinkState.CONNECTING in puller.events[1:]
    # resumed, not restarted: at most the window is requested twice
    assert art.chunk_count <= puller.requests <= art.chunk_count + 2 * WINDOW
