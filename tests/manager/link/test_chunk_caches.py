"""The chunk caches of a bulk deployment: read once (delivery), encoded once (transport)."""

from __future__ import annotations

import zmq

from swarmdeploy.manager.link.delivery import ChunkCache
from swarmdeploy.protocol.messages import Chunk, decode
from swarmdeploy.transport.zmq_manager import ChunkFrames

SHA = "ab" * 32


def test_chunk_cache_keeps_the_newest_within_its_bytes() -> None:
    cache = ChunkCache(max_bytes=10)
    cache.put(SHA, 0, b"aaaa")
    cache.put(SHA, 4, b"bbbb")
    assert cache.get(SHA, 0, 4) == b"aaaa"  # now the newest
    cache.put(SHA, 8, b"cccc")  # 12 bytes: the oldest (offset 4) goes
    assert cache.get(SHA, 4, 4) is None
    assert cache.get(SHA, 0, 4) == b"aaaa" and cache.get(SHA, 8, 4) == b"cccc"
    assert cache.get(SHA, 0, 3) is None  # another range of the same offset is another key
    cache.put(SHA, 12, b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get(SHA, 12, 11) is None and cache.get(SHA, 8, 4) == b"cccc"


def test_chunk_frames_encode_each_chunk_once_and_decode_to_it() -> None:
    frames = ChunkFrames(max_bytes=1 << 20)
    msg = Chunk(task_id="k1", sha256=SHA, index=2, data=b"z" * 1000)
    first = frames.frame(msg, 1 << 20)
    again = frames.frame(Chunk(task_id="k1", sha256=SHA, index=2, data=b"z" * 1000), 1 << 20)
    assert again is first
    assert decode(first.bytes) == msg
    other = frames.frame(Chunk(task_id="k1", sha256=SHA, index=3, data=b"y" * 10), 1 << 20)
    assert other is not first and decode(other.bytes).data == b"y" * 10


def test_chunk_frames_drop_the_oldest_beyond_the_limit() -> None:
    frames = ChunkFrames(max_bytes=2500)
    chunks = [Chunk(task_id="k1", sha256=SHA, index=i, data=bytes([i]) * 1000) for i in range(3)]
    made = [frames.frame(c, 1 << 20) for c in chunks]
    assert frames.frame(chunks[2], 1 << 20) is made[2]
    assert frames.frame(chunks[0], 1 << 20) is not made[0]  # encoded again


def test_a_frame_is_sent_to_many_peers_whole() -> None:
    frames = ChunkFrames(max_bytes=1 << 20)
    frame = frames.frame(Chunk(task_id="k1", sha256=SHA, index=0, data=b"q" * 70_000), 1 << 20)
    ctx = zmq.Context()
    try:
        out, inn = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        inn.bind("inproc://chunks")
        out.connect("inproc://chunks")
        for _ in range(3):
            out.send(frame, copy=False)
        for _ in range(3):
            got = decode(inn.recv())
            assert isinstance(got, Chunk) and got.data == b"q" * 70_000
        out.close(0)
        inn.close(0)
    finally:
        ctx.term()
