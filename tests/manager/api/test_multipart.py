"""``POST /tasks`` as multipart/form-data (descriptor + archive) against a real app."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manager.conftest import Api, make_settings, running_api

BUILD = {
    "description": "hello for armhf",
    "build": {"host": "builder", "commands": ["make hello"], "artifacts": ["hello"]},
    "deploy": {"run": {"commands": ["./hello"]}, "target": {"tags": ["armhf"]}},
}


def zip_bytes(size: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("hello.c", "int main(void) { return 0; }\n")
        if size:
            zf.writestr("blob.bin", bytes(size))
    return buf.getvalue()


def parts(descriptor: Any = BUILD, archive: bytes | None = None) -> dict[str, Any]:
    """httpx ``files`` for a descriptor (YAML text) and an archive."""
    files: dict[str, Any] = {}
    if descriptor is not None:
        files["descriptor"] = (None, yaml.safe_dump(descriptor), "application/yaml")
    if archive is not None:
        files["archive"] = ("src.zip", archive, "application/zip")
    return files


def incoming(api: Api) -> list[Path]:
    folder = api.settings.data_dir / "incoming"
    return list(folder.iterdir()) if folder.exists() else []


@pytest.fixture
async def fleet(api: Api) -> Api:
    assert (await api.register("builder")).status_code == 201
    assert (await api.register("pi-1", tags=["armhf"])).status_code == 201
    return api


async def test_multipart_build_task_stores_the_archive_content_addressed(fleet: Api) -> None:
    archive = zip_bytes(300_000)
    r = await fleet.client.post("/tasks", files=parts(archive=archive))
    assert r.status_code == 201, r.text
    digest = hashlib.sha256(archive).hexdigest()
    assert r.json()["source"] == {"task": None, "sha256": digest, "size": len(archive)}
    assert r.json()["build"]["host"] == "builder"
    assert await fleet.services.blobs.get(digest) == archive
    assert incoming(fleet) == []


async def test_json_descriptor_part_is_read_as_json(fleet: Api) -> None:
    files: dict[str, Any] = {
        "descriptor": ("task.json", json.dumps(BUILD), "application/json"),
        "archive": ("src.zip", zip_bytes(), "application/octet-stream"),
    }
    r = await fleet.client.post("/tasks", files=files)
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "hello for armhf"


@pytest.mark.parametrize(
    ("files", "path", "words"),
    [
        (parts({**BUILD, "source": {"zip": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}, zip_bytes()),
         "$.source.zip", "remove source.zip"),
        (parts(archive=None), "multipart.archive", "'archive' (a zip or tar.gz file) is missing"),
        (parts(None, zip_bytes()), "multipart.descriptor", "'descriptor'"),
        (parts(archive=b"not an archive"), "multipart.archive", "zip or tar.gz file"),
        ({**parts(archive=zip_bytes()), "extra": (None, "x")}, "multipart.extra", "unknown part"),
        (parts({**BUILD, "build": {"host": "builder", "commands": ["make"],
                                   "artifacts": ["../up"]}}, zip_bytes()),
         "$.build.artifacts[0]", "'..'"),
    ],
)  # fmt: skip
async def test_invalid_multipart_tasks_are_422_naming_the_part(
    fleet: Api, files: dict[str, Any], path: str, words: str
) -> None:
    r = await fleet.client.post("/tasks", files=files)
    assert r.status_code == 422, r.text
    assert r.json()["path"] == path and words in r.json()["error"]
    assert incoming(fleet) == []


async def test_malformed_or_truncated_multipart_is_400(fleet: Api) -> None:
    no_boundary = await fleet.client.post(
        "/tasks", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]
    body = b'--B\r\nContent-Disposition: form-data; name="archive"; filename="a"\r\n\r\nPK'
    truncated = await fleet.client.post(
        "/tasks", content=body, headers={"Content-Type": "multipart/form-data; boundary=B"}
    )
    assert truncated.status_code == 400 and "ended" in truncated.json()["error"]
    assert incoming(fleet) == []


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, max_body_bytes=1024, max_task_body_bytes=64 * 1024)
    async with running_api(settings) as api:
        assert (await api.register("builder")).status_code == 201
        assert (await api.register("pi-1", tags=["armhf"])).status_code == 201
        yield api


async def test_archive_over_the_task_limit_is_413_and_leaves_no_file(small: Api) -> None:
    r = await small.client.post("/tasks", files=parts(archive=zip_bytes(100_000)))
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    assert incoming(small) == []
    ok = await small.client.post("/tasks", files=parts(archive=zip_bytes(10_000)))
    assert ok.status_code == 201, ok.text


async def test_streamed_archive_without_length_is_cut_off_at_the_limit(small: Api) -> None:
    head = (
        b'--B\r\nContent-Disposition: form-data; name="descriptor"\r\n\r\n'
        + yaml.safe_dump(BUILD).encode()
        + b'\r\n--B\r\nContent-Disposition: form-data; name="archive"; filename="a.zip"'
        + b"\r\n\r\n"
    )

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(100):  # 1.6 MB in 16 KiB pieces, no Content-Length
            yield bytes(16 * 1024)

    r = await small.client.post(
        "/tasks", content=body(), headers={"Content-Type": "multipart/form-data; boundary=B"}
    )
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    assert incoming(small) == []
