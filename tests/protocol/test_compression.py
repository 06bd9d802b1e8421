"""Compressed envelopes (docs/protocol.md §2.1): what is compressed, what is not, and that a
hostile envelope (a bomb, nesting, corruption, an unknown algorithm) is a MessageError."""

from __future__ import annotations

import os
import zlib

import pytest

from swarmdeploy.protocol import compression
from swarmdeploy.protocol.codec import pack
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import (
    Chunk,
    Health,
    LogBatch,
    LogEntry,
    Welcome,
    decode,
    encode,
)
from swarmdeploy.transport.link import decode_from_agent


def log_batch(lines: int) -> LogBatch:
    """A batch of typical build output (repetitive text, as logs are)."""
    entries = [
        LogEntry(seq=i + 1, task="t-1", stage="install", time_ms=1_700_000_000_000 + i,
                 command="make", output=f"Compiling src/module_{i % 17}.c ... ok ({i} of {lines})")
        for i in range(lines)
    ]  # fmt: skip
    return LogBatch(entries=entries)


def test_a_large_log_batch_goes_compressed_and_decodes_to_the_same_message() -> None:
    batch = log_batch(500)
    plain = encode(batch)
    packed = encode(batch, compression="zlib")
    assert len(packed) < len(plain) / 4
    assert packed[1:17] == b"\xa4type\xaacompressed"
    assert decode(packed) == batch == decode(plain)


def test_small_messages_chunks_and_incompressible_data_go_as_they_are() -> None:
    small = Health(at_ms=1)
    assert encode(small, compression="zlib") == encode(small)
    chunk = Chunk(task_id="t-1", sha256="0" * 64, index=0, data=b"a" * 100_000)
    assert encode(chunk, compression="zlib") == encode(chunk)  # archive bytes: never
    assert compression.compress("log", os.urandom(4096), "zlib") is None  # no saving
    assert encode(log_batch(500), compression="") == encode(log_batch(500))


def test_choose_picks_a_shared_algorithm() -> None:
    assert compression.choose(["zstd", "zlib"]) == "zlib"
    assert compression.choose(["zstd"]) == ""
    assert compression.choose([]) == ""


def envelope(data: bytes, alg: str = "zlib") -> bytes:
    return pack({"v": 1, "type": "compressed", "alg": alg, "data": data}, max_bytes=1 << 30)


def test_an_envelope_that_expands_beyond_the_limit_is_refused() -> None:
    bomb = envelope(zlib.compress(b"\0" * (8 << 20), 9))  # 8 MiB of zeros in ~8 KiB
    assert len(bomb) < 16 * 1024
    with pytest.raises(MessageError) as info:
        decode(bomb, max_bytes=1 << 20)
    assert info.value.code == "too_large"


def test_nested_corrupt_truncated_and_unknown_envelopes_are_refused() -> None:
    inner = encode(log_batch(100), compression="zlib")
    with pytest.raises(MessageError, match="must not hold another"):
        decode(envelope(zlib.compress(inner)))
    with pytest.raises(MessageError, match="corrupt"):
        decode(envelope(b"not zlib at all"))
    whole = zlib.compress(encode(log_batch(100)))
    with pytest.raises(MessageError, match="truncated"):
        decode(envelope(whole[:-8]))
    with pytest.raises(MessageError, match="truncated or trailing"):
        decode(envelope(whole + b"junk"))
    with pytest.raises(MessageError) as info:
        decode(envelope(whole, alg="lz4"))
    assert info.value.code == "unsupported_compression"
    with pytest.raises(MessageError, match="needs bytes"):
        decode(pack({"v": 1, "type": "compressed", "alg": "zlib", "data": "x"}, max_bytes=99))


def test_direction_rules_apply_to_the_inner_message() -> None:
    welcome = Welcome(revocations=b"r" * 4096)  # compressible, manager-only
    packed = encode(welcome, compression="zlib")
    assert packed != encode(welcome)
    with pytest.raises(MessageError) as info:
        decode_from_agent(packed)
    assert info.value.code == "wrong_direction"
