"""Chunked artifact transfer (docs/protocol.md §6.5/§6.6) against a scripted peer."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from swarmdeploy.agent.errors import TaskRefused, TransferError
from swarmdeploy.agent.processor import _verify_artifacts
from swarmdeploy.agent.transfer import ArtifactFetch, TaskTransfer
from swarmdeploy.agent.upload import ArtifactUpload
from swarmdeploy.protocol.manifest import ArtifactInfo, TaskManifest
from swarmdeploy.protocol.messages import (
    Chunk,
    ChunkRequest,
    Error,
    Message,
    UploadAck,
    UploadChunk,
    UploadOffer,
)
from tests.agent.fake_clock import no_jitter
from tests.agent.helpers import eventually

CHUNK = 1000
DATA = os.urandom(10_500)
INFO = ArtifactInfo(
    name="a.tar.gz",
    sha256=hashlib.sha256(DATA).hexdigest(),
    size_bytes=len(DATA),
    chunk_bytes=CHUNK,
)


class Peer:
    """Records what the agent sends; answers chunk requests when ``serving``."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.transfer: TaskTransfer | None = None
        self.serving = True
        self.connected = True

    async def send(self, msg: Message) -> bool:
        if not self.connected:
            return False
        self.sent.append(msg)
        if isinstance(msg, ChunkRequest) and self.serving and self.transfer is not None:
            offset, length = INFO.chunk_span(msg.index)
            chunk = Chunk(
                task_id="t", sha256=msg.sha256, index=msg.index, data=DATA[offset : offset + length]
            )
            asyncio.get_running_loop().call_soon(self.transfer.on_chunk, chunk)
        return True

    def requests(self) -> list[int]:
        return [m.index for m in self.sent if isinstance(m, ChunkRequest)]


def transfer(peer: Peer, tmp_path: Path, paused: list[bool] | None = None) -> TaskTransfer:
    flag = paused or [False]
    peer.transfer = TaskTransfer(
        "t",
        [INFO],
        tmp_path / "dl",
        peer.send,
        window=3,
        timeout_s=0.3,
        paused=lambda: flag[0],
        poll_s=0.02,
    )
    return peer.transfer


async def test_artifact_is_fetched_verified_and_moved_into_place(tmp_path: Path) -> None:
    peer = Peer()
    (path,) = await transfer(peer, tmp_path).run()
    assert path.read_bytes() == DATA and path.name == f"{INFO.sha256}.bin"
    assert sorted(peer.requests()) == list(range(11))
    assert not list((tmp_path / "dl").glob("*.part")) and not list((tmp_path / "dl").glob("*.have"))


async def test_only_a_file_hashed_in_this_run_counts_as_verified(tmp_path: Path) -> None:
    """The processor checks every other file again before unpacking (``_verify_artifacts``),
    so a file found complete on disk (a resumed task) must not count as verified."""
    peer = Peer()
    fresh = transfer(peer, tmp_path)
    (path,) = await fresh.run()
    assert fresh.verified == {path}
    path.write_bytes(b"tampered while the agent was down")
    again = transfer(Peer(), tmp_path)
    assert await again.run() == [path]
    assert again.verified == set()


def test_a_file_not_hashed_in_this_run_is_checked_before_unpacking(tmp_path: Path) -> None:
    path = tmp_path / f"{INFO.sha256}.bin"
    path.write_bytes(b"tampered while the agent was down")
    manifest = cast(TaskManifest, SimpleNamespace(artifacts=[INFO]))
    with pytest.raises(TaskRefused, match=r"does not match|wrong size"):
        _verify_artifacts(manifest, [path], hashed=set())
    assert not path.exists()  # removed, so that a retry fetches it again
    path.write_bytes(DATA)
    _verify_artifacts(manifest, [path], hashed=set())  # the right content passes


async def test_no_chunk_is_requested_while_paused(tmp_path: Path) -> None:
    peer, paused = Peer(), [True]
    job = asyncio.create_task(transfer(peer, tmp_path, paused).run())
    await asyncio.sleep(0.2)
    assert peer.requests() == []
    paused[0] = False
    await asyncio.wait_for(job, 5)
    assert sorted(peer.requests()) == list(range(11))


async def test_outstanding_requests_never_exceed_the_window(tmp_path: Path) -> None:
    peer = Peer()
    peer.serving = False
    job = asyncio.create_task(transfer(peer, tmp_path).run())
    await eventually(lambda: len(peer.requests()) >= 3)
    await asyncio.sleep(0.1)
    assert peer.requests() == [0, 1, 2]
    await eventually(lambda: len(peer.requests()) >= 6)  # timed out: the same ones again
    assert sorted(peer.requests()[3:6]) == [0, 1, 2]  # each with its own jitter
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job


async def test_partial_download_resumes_from_the_chunk_record(tmp_path: Path) -> None:
    directory = tmp_path / "dl"
    directory.mkdir()
    fetch = ArtifactFetch(INFO, directory, window=3, timeout_s=1)
    fetch.open()
    for index in (0, 1, 5):
        offset, length = INFO.chunk_span(index)
        assert fetch.accept(index, DATA[offset : offset + length])
    assert not fetch.accept(2, b"short")  # wrong length: not taken
    assert not fetch.accept(99, b"x")  # out of range
    fetch.close()
    peer = Peer()
    await transfer(peer, tmp_path).run()
    assert sorted(peer.requests()) == [2, 3, 4, 6, 7, 8, 9, 10]


async def test_refusal_by_the_manager_fails_the_transfer(tmp_path: Path) -> None:
    peer = Peer()
    peer.serving = False
    job = asyncio.create_task(transfer(peer, tmp_path).run())
    await eventually(lambda: bool(peer.requests()))
    assert peer.transfer is not None
    peer.transfer.on_error(
        Error(code="busy", in_reply_to="chunk_request", sha256=INFO.sha256, index=0)
    )
    await asyncio.sleep(0.05)
    assert not job.done()  # transient: asked again later
    peer.transfer.on_error(
        Error(code="not_authorized", in_reply_to="chunk_request", message="stopped")
    )
    with pytest.raises(TransferError, match="not_authorized"):
        await asyncio.wait_for(job, 5)


class Receiver:
    """A manager side of an upload: acks chunks; the first upload ends in a digest mismatch
    when ``mismatch`` is set."""

    def __init__(self, mismatch: bool = False) -> None:
        self.upload: ArtifactUpload | None = None
        self.chunks: dict[int, bytes] = {}
        self.offers = 0
        self.mismatch = mismatch

    async def send(self, msg: Message) -> bool:
        assert self.upload is not None
        loop = asyncio.get_running_loop()
        if isinstance(msg, UploadOffer):
            self.offers += 1
            ack = UploadAck(task_id="t", sha256=msg.sha256, next_index=len(self.chunks))
            loop.call_soon(self.upload.on_ack, ack)
        elif isinstance(msg, UploadChunk):
            self.chunks[msg.index] = msg.data
            complete = len(self.chunks) == 11
            if complete and self.mismatch:
                self.mismatch, self.chunks = False, {}
                err = Error(code="digest_mismatch", in_reply_to="upload_chunk", sha256=msg.sha256)
                loop.call_soon(self.upload.on_error, err)
                return True
            ack = UploadAck(
                task_id="t", sha256=msg.sha256, next_index=len(self.chunks), complete=complete
            )
            loop.call_soon(self.upload.on_ack, ack)
        return True


@pytest.mark.parametrize("mismatch", [False, True])
async def test_upload_is_acknowledged_chunk_by_chunk(tmp_path: Path, mismatch: bool) -> None:
    path = tmp_path / "a.tar.gz"
    path.write_bytes(DATA)
    peer = Receiver(mismatch)
    peer.upload = ArtifactUpload(
        "t",
        path,
        INFO.sha256,
        "a.tar.gz",
        peer.send,
        window=3,
        timeout_s=1,
        chunk_bytes=CHUNK,
        poll_s=0.02,
    )
    await asyncio.wait_for(peer.upload.run(), 5)
    assert b"".join(peer.chunks[i] for i in range(11)) == DATA
    assert peer.offers == (2 if mismatch else 1)


def resend_times(fetch: ArtifactFetch, index: int, upto: float) -> list[float]:
    """Call ``due`` every 0.1 s from 0 to ``upto``; when ``index`` was requested again."""
    out, now = [], 0.0
    while now < upto:
        now = round(now + 0.1, 1)
        if index in fetch.due(now):
            out.append(now)
    return out


def test_unanswered_chunk_request_second_resend_waits_twice_as_long(tmp_path: Path) -> None:
    fetch = ArtifactFetch(INFO, tmp_path, window=1, timeout_s=1.0, rng=no_jitter)
    fetch.open()
    assert fetch.due(0.0) == [0]
    assert resend_times(fetch, 0, 8.0) == [1.0, 3.0, 7.0]  # waits 1, 2, 4
    fetch.requeue_outstanding()  # a reconnect: at once, then the base wait again
    assert fetch.due(7.5) == [0]
    assert resend_times(fetch, 0, 9.0)[:1] == [8.5]
    fetch.close()
