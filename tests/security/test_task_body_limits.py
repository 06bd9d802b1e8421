"""Task descriptors are bounded before they are parsed (issue 9, item 7): YAML by size,
every descriptor by its number of list/mapping entries, the multipart descriptor part too;
the archive keeps its own, larger channel."""

from __future__ import annotations

import base64
import os
import time

import pytest

from tests.manager.conftest import Api

YAML = {"Content-Type": "application/yaml"}


async def _post(api: Api, body: bytes, headers: dict[str, str]) -> tuple[int, str, float]:
    started = time.perf_counter()
    resp = await api.client.post("/tasks", content=body, headers=headers)
    return resp.status_code, resp.json().get("error", ""), time.perf_counter() - started


async def test_a_64_mib_yaml_body_is_refused_unparsed(api: Api) -> None:
    body = b"description: x\nsource:\n  zip: " + b"A" * (63 << 20) + b"\n"
    status, error, _ = await _post(api, body, YAML)
    assert status == 413 and "YAML is limited to 8388608 bytes" in error


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"description: x\nitems: [" + b"{}," * 350_000 + b"]\n", YAML),  # 1 MiB, 259 MiB parsed
        (b"description: x\nitems:\n" + b"- a\n" * 260_000, YAML),
        (b'{"description": "x", "d": [' + b"[]," * 2_000_000 + b"[]]}", {}),  # 6 MiB JSON
    ],
    ids=["yaml-flow", "yaml-block", "json"],
)
async def test_descriptor_with_too_many_entries_is_refused_fast(
    api: Api, body: bytes, headers: dict[str, str]
) -> None:
    status, error, seconds = await _post(api, body, headers)
    assert status == 413 and "at most 20000 are accepted" in error
    assert seconds < 1.0  # unbounded, the YAML one alone parses for about 4 s


async def test_multipart_descriptor_part_is_bounded_too(api: Api) -> None:
    files = {"descriptor": (None, b"d: [" + b"{}," * 100_000 + b"]", "application/yaml"),
             "archive": ("a.zip", b"PK\x05\x06" + bytes(18), "application/zip")}  # fmt: skip
    resp = await api.client.post("/tasks", files=files)
    assert resp.status_code == 413 and "the descriptor part has up to" in resp.json()["error"]


async def test_a_json_descriptor_with_a_6_mib_inline_archive_is_still_parsed(api: Api) -> None:
    blob = base64.b64encode(os.urandom(6 << 20)).decode()
    doc = b'{"description": "x", "source": {"zip": "%s"}, "deploy": {"run": {"commands": ["a"]},'
    body = doc % blob.encode() + b' "target": {"ids": ["nobody"]}}}'
    status, error, _ = await _post(api, body, {"Content-Type": "application/json"})
    assert status == 422, error  # parsed: refused only for its content (archive, targets)


async def test_preview_is_bounded_like_create(api: Api) -> None:
    body = b"description: x\nitems: [" + b"{}," * 30_000 + b"]\n"  # 90 KB
    resp = await api.client.post("/tasks/preview", content=body, headers=YAML)
    assert resp.status_code == 413 and "at most 20000 are accepted" in resp.json()["error"]
