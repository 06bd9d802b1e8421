"""The signed task manifest: canonical bytes, strict schema, chunk arithmetic."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.manifest import (
    MAX_MANIFEST_BYTES,
    ArtifactInfo,
    Rlimits,
    SandboxPolicy,
    TaskManifest,
    decode_manifest,
    encode_manifest,
)
from tests.protocol.strategies import for_struct

SHA = "cd" * 32


def _manifest(**kw: object) -> TaskManifest:
    art = ArtifactInfo(name="source.zip", sha256=SHA, size_bytes=600_000, chunk_bytes=262_144)
    fields: dict[str, object] = {"task_id": "t1", "artifacts": [art], "install": ["make"]}
    fields.update(kw)
    return TaskManifest(**fields)  # type: ignore[arg-type]


@given(for_struct(TaskManifest))
def test_any_valid_manifest_round_trips(manifest: TaskManifest) -> None:
    assert decode_manifest(encode_manifest(manifest)) == manifest


def test_encoding_is_canonical_json_with_sorted_keys() -> None:
    data = encode_manifest(_manifest(run=["./app"], auto_restart=True))
    doc = json.loads(data)
    assert list(doc) == sorted(doc)
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert encode_manifest(decode_manifest(data)) == data


def test_unknown_manifest_fields_are_refused() -> None:
    doc = json.loads(encode_manifest(_manifest()))
    doc["jail"] = "strict"
    with pytest.raises(MessageError, match="jail"):
        decode_manifest(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "data", [b"", b"[]", b"{", b'{"task_id": "-"}', b"\xff\xfe", b"[" * 100_000]
)
def test_invalid_manifest_bytes_raise_message_error(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode_manifest(data)


def test_oversized_manifest_is_refused() -> None:
    with pytest.raises(MessageError) as info:
        decode_manifest(b" " * (MAX_MANIFEST_BYTES + 1))
    assert info.value.code == "too_large"


def test_encode_refuses_constraint_violations() -> None:
    with pytest.raises(MessageError):
        encode_manifest(_manifest(task_id="no spaces"))


def test_chunk_spans_cover_the_artifact_exactly() -> None:
    art = _manifest().artifacts[0]
    assert art.chunk_count == 3
    spans = [art.chunk_span(i) for i in range(art.chunk_count)]
    assert spans == [(0, 262_144), (262_144, 262_144), (524_288, 75_712)]
    assert sum(length for _, length in spans) == art.size_bytes
    for bad in (-1, 3):
        with pytest.raises(MessageError) as info:
            art.chunk_span(bad)
        assert info.value.code == "bad_index"


@given(st.integers(0, 10**12), st.integers(1, 2**20))
def test_chunk_count_matches_size(size: int, chunk: int) -> None:
    art = ArtifactInfo(name="a", sha256=SHA, size_bytes=size, chunk_bytes=chunk)
    count = art.chunk_count
    assert (count - 1) * chunk < size <= count * chunk or size == count == 0
    if count:
        offset, length = art.chunk_span(count - 1)
        assert offset + length == size and 0 < length <= chunk


def test_artifact_lookup_by_digest() -> None:
    manifest = _manifest()
    assert manifest.artifact(SHA).name == "source.zip"
    with pytest.raises(MessageError) as info:
        manifest.artifact("00" * 32)
    assert info.value.code == "unknown_artifact"


def test_signed_fields_default_to_an_unsigned_legacy_manifest() -> None:
    manifest = _manifest()
    assert (manifest.sequence, manifest.target_ids, manifest.target_tags) == (0, [], [])
    assert manifest.sandbox == SandboxPolicy()  # the strictest policy: no network, nobody
    doc = json.loads(encode_manifest(manifest))
    assert not {"sequence", "target_ids", "target_tags", "sandbox"} & set(doc)  # omitted


def test_sandbox_policy_travels_in_the_manifest_and_is_strict() -> None:
    policy = SandboxPolicy(network=True, rlimits=Rlimits(cpu_s=5), rw_paths=("/srv/x",))
    manifest = _manifest(sequence=3, target_ids=["robot-1"], target_tags=["lab"], sandbox=policy)
    assert decode_manifest(encode_manifest(manifest)) == manifest
    doc = json.loads(encode_manifest(manifest))
    for bad in ({"netwrk": True}, {"uid": 0}, {"rlimits": {"cpu": 1}}):
        doc["sandbox"] = bad
        with pytest.raises(MessageError):
            decode_manifest(json.dumps(doc).encode())


def test_manifest_signed_before_the_device_grants_keeps_its_exact_bytes() -> None:
    # A manifest as an older manager signed it: network and limits, none of the newer
    # fields. It decodes, and re-encodes to the very bytes the signature covers.
    old = (
        b'{"run":["./robot"],"sandbox":{"network":true,"rlimits":'
        b'{"cpu_s":5,"nproc":10}},"sequence":4,"target_ids":["r1"],"task_id":"t1"}'
    )
    manifest = decode_manifest(old)
    assert manifest.sandbox.group_names == () and manifest.sandbox.rlimits.data_bytes == 0
    assert encode_manifest(manifest) == old


def test_group_names_and_data_limit_travel_and_bad_names_are_refused() -> None:
    policy = SandboxPolicy(group_names=("dialout", "video"), rlimits=Rlimits(data_bytes=1 << 28))
    manifest = _manifest(sandbox=policy)
    assert decode_manifest(encode_manifest(manifest)).sandbox == policy
    assert policy.rlimits.prlimit_args() == [f"--data={1 << 28}"]
    doc = json.loads(encode_manifest(manifest))
    for bad in (["video", "1bad"], ["a b"], ["x" * 33]):
        doc["sandbox"]["group_names"] = bad
        with pytest.raises(MessageError):
            decode_manifest(json.dumps(doc).encode())
