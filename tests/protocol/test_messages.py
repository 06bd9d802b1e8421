"""Wire messages: round trips, unknown fields and types, limits, garbage (docs/protocol.md §2)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmdeploy.protocol.errors import MessageError, ProtocolError
from swarmdeploy.protocol.messages import (
    AGENT_TO_MANAGER,
    ALL_TOPIC,
    HINT_TYPES,
    MANAGER_TO_AGENT,
    MAX_CHUNK_BYTES,
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Chunk,
    Hello,
    LogBatch,
    LogEntry,
    MessageBase,
    StateReport,
    TaskReport,
    UnknownMessage,
    decode,
    encode,
    id_topic,
    message_type,
    tag_topic,
    valid_name,
)
from swarmdeploy.protocol.states import TargetState
from tests.protocol.strategies import messages, plain

SHA = "ab" * 32


def _raw(data: bytes) -> dict[str, Any]:
    out = msgspec.msgpack.decode(data)
    assert isinstance(out, dict)
    return out


@given(messages)
def test_any_valid_message_round_trips_unchanged(msg: MessageBase) -> None:
    data = encode(msg)
    assert decode(data) == msg
    raw = _raw(data)
    assert raw["v"] == PROTOCOL_VERSION
    assert raw["type"] == message_type(msg)


@given(messages, st.dictionaries(st.text(min_size=1, max_size=8).map(lambda s: "x_" + s), plain))
def test_unknown_top_level_fields_survive_decode_and_reencode(
    msg: MessageBase, extra: dict[str, Any]
) -> None:
    raw = _raw(encode(msg))
    raw.update(extra)
    decoded = decode(msgspec.msgpack.encode(raw))
    assert isinstance(decoded, MessageBase)
    assert decoded.extra == extra
    assert _raw(encode(decoded)) == raw


def test_unknown_nested_fields_survive_in_their_record() -> None:
    raw = _raw(encode(LogBatch(entries=[LogEntry(seq=1, time_ms=5, output="hi")])))
    raw["entries"][0]["pid"] = 42
    raw["new_top"] = {"nested": [1, b"x"]}
    decoded = decode(msgspec.msgpack.encode(raw))
    assert isinstance(decoded, LogBatch)
    assert decoded.entries[0].extra == {"pid": 42}
    assert decoded.extra == {"new_top": {"nested": [1, b"x"]}}
    assert _raw(encode(decoded)) == raw


def test_a_wire_key_named_like_the_extra_slot_is_kept_as_unknown() -> None:
    raw = _raw(encode(Hello()))
    raw["__extra__"] = {"a": 1}
    decoded = decode(msgspec.msgpack.encode(raw))
    assert isinstance(decoded, Hello)
    assert decoded.extra == {"__extra__": {"a": 1}}
    assert _raw(encode(decoded)) == raw


def test_extra_colliding_with_a_known_field_is_refused_on_encode() -> None:
    with pytest.raises(MessageError):
        encode(Hello(extra={"boot_id": "x"}))
    with pytest.raises(MessageError):
        encode(Hello(extra={"type": "welcome"}))


@given(st.text(min_size=1, max_size=20).filter(lambda t: t not in MESSAGE_TYPES), plain)
def test_unknown_type_is_returned_whole_and_reencodes(kind: str, value: Any) -> None:
    data = msgspec.msgpack.encode({"v": 1, "type": kind, "payload": value})
    decoded = decode(data)
    assert decoded == UnknownMessage(type=kind, v=1, fields={"payload": value})
    assert message_type(decoded) == kind
    assert _raw(encode(decoded)) == _raw(data)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_message_error(data: bytes) -> None:
    try:
        decode(data)
    except MessageError:
        pass


@settings(max_examples=300)
@given(st.sampled_from(sorted(MESSAGE_TYPES)), st.dictionaries(st.text(max_size=12), plain))
def test_garbage_fields_for_known_types_raise_only_message_error(
    kind: str, fields: dict[str, Any]
) -> None:
    fields.update(v=1, type=kind)
    try:
        decode(msgspec.msgpack.encode(fields))
    except MessageError:
        pass


@settings(max_examples=200)
@given(messages, st.data())
def test_corrupted_encodings_raise_only_message_error(
    msg: MessageBase, data: st.DataObject
) -> None:
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(raw))
    except MessageError:
        pass


@pytest.mark.parametrize(
    "data",
    [
        b"\x91" * 100_000 + b"\x00",  # nested arrays: recursion bomb
        b"\x81\xa1a" * 50_000 + b"\x00",  # nested maps
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
        b"\xd4\x05\x00",  # extension type
        msgspec.msgpack.encode({1: 2}),  # non-string key
        msgspec.msgpack.encode([1, 2]),  # not a map
        msgspec.msgpack.encode({"v": 1}),  # no type
        msgspec.msgpack.encode({"type": "hello"}),  # no version
        msgspec.msgpack.encode({"v": True, "type": "hello"}),  # bool is not a version
        msgspec.msgpack.encode({"v": 1, "type": ""}),
        msgspec.msgpack.encode({"v": 1, "type": "hello", "tasks": [{1: 2}]}),
    ],
)
def test_hostile_inputs_raise_message_error(data: bytes) -> None:
    with pytest.raises(MessageError) as info:
        decode(data)
    assert isinstance(info.value, ProtocolError)
    assert info.value.code == "invalid_message"


def test_other_protocol_version_is_refused_with_its_code() -> None:
    with pytest.raises(MessageError) as info:
        decode(msgspec.msgpack.encode({"v": 2, "type": "hello"}))
    assert info.value.code == "unsupported_version"


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(MessageError) as info:
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert info.value.code == "too_large"
    with pytest.raises(MessageError) as info:
        decode(encode(Hello()), max_bytes=3)
    assert info.value.code == "too_large"


def test_largest_chunk_fits_and_a_larger_one_is_refused() -> None:
    big = Chunk(task_id="t", sha256=SHA, index=0, data=b"\x01" * MAX_CHUNK_BYTES)
    assert decode(encode(big)) == big
    with pytest.raises(MessageError):
        encode(Chunk(task_id="t", sha256=SHA, index=0, data=b"\x01" * (MAX_CHUNK_BYTES + 1)))


@pytest.mark.parametrize(
    "msg",
    [
        Chunk(task_id="t", sha256=SHA, index=-1, data=b""),
        Chunk(task_id="t", sha256="XYZ", index=0, data=b""),
        StateReport(task_id="bad id", state=TargetState.RUNNING),
        StateReport(task_id="t\n", state=TargetState.RUNNING),  # "$" would let this through
        Hello(tasks=[TaskReport(task_id="", state=TargetState.RUNNING)]),
    ],
)
def test_encode_refuses_invalid_values(msg: MessageBase) -> None:
    with pytest.raises(MessageError) as info:
        encode(msg)
    assert "$" in str(info.value) or "regex" in str(info.value) or ">=" in str(info.value)


def test_nested_validation_errors_name_the_full_path() -> None:
    data = msgspec.msgpack.encode(
        {
            "v": 1,
            "type": "hello",
            "tasks": [{"task_id": "ok", "state": "running"}, {"task_id": "-"}],
        }
    )
    with pytest.raises(MessageError, match=r"\$\.tasks\[1\]"):
        decode(data)


def test_directions_partition_the_known_types() -> None:
    assert AGENT_TO_MANAGER.isdisjoint(MANAGER_TO_AGENT)
    assert AGENT_TO_MANAGER | MANAGER_TO_AGENT == set(MESSAGE_TYPES)
    assert HINT_TYPES <= MANAGER_TO_AGENT


def test_topics_are_terminated_so_prefixes_do_not_match() -> None:
    assert tag_topic("foo") == b"TAG-foo\x00"
    assert not tag_topic("foobar").startswith(tag_topic("foo"))
    assert id_topic("dev-1") == b"ID-dev-1\x00"
    assert ALL_TOPIC == b"ALL\x00"


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x\n", "é", "a" * 129])
def test_invalid_names_make_no_topic(name: str) -> None:
    assert not valid_name(name)
    with pytest.raises(MessageError):
        tag_topic(name)
