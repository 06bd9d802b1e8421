"""``/floorplans`` and indoor positions of targets (indoor maps)."""

from __future__ import annotations

import struct
import zlib

import pytest

from swarmdeploy.manager.services.floorplans import image_size
from tests.manager.conftest import Api


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xc8" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))  # fmt: skip


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a JPEG up to its frame header (enough for the size)."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def test_image_size_reads_png_and_jpeg_headers_and_refuses_others() -> None:
    assert image_size(png(40, 30)) == ("image/png", 40, 30)
    assert image_size(jpeg_header(1024, 768)) == ("image/jpeg", 1024, 768)
    for bad in (b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"GIF89a....", b"\xff\xd8\xff"):
        with pytest.raises(ValueError):
            image_size(bad)


async def test_upload_list_image_place_and_delete(api: Api) -> None:
    assert (await api.register("in-1")).status_code == 201
    body = png(400, 300)
    r = await api.client.post(
        "/floorplans", params={"name": "hall A"}, content=body,
        headers={"Content-Type": "image/png"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    plan = r.json()
    assert (plan["width"], plan["height"], plan["mediaType"]) == (400, 300, "image/png")
    listed = (await api.client.get("/floorplans")).json()["items"]
    assert [p["name"] for p in listed] == ["hall A"]
    image = await api.client.get(f"/floorplans/{plan['id']}/image")
    assert image.content == body and image.headers["content-type"] == "image/png"

    placed = await api.client.put(
        "/targets/in-1", json={"indoor": {"plan": plan["id"], "x": 120, "y": 80}}
    )
    assert placed.json()["indoor"] == {"plan": plan["id"], "x": 120, "y": 80}
    assert (await api.client.get("/targets")).json()["items"][0]["indoor"]["x"] == 120
    outside = await api.client.put(
        "/targets/in-1", json={"indoor": {"plan": plan["id"], "x": 401, "y": 1}}
    )
    assert outside.status_code == 422 and outside.json()["path"] == "$.indoor"
    unknown = await api.client.put(
        "/targets/in-1", json={"indoor": {"plan": "0" * 16, "x": 1, "y": 1}}
    )
    assert unknown.status_code == 422 and unknown.json()["path"] == "$.indoor.plan"

    assert (await api.client.delete(f"/floorplans/{plan['id']}")).status_code == 204
    assert (await api.client.get("/targets/in-1")).json()["indoor"] is None


async def test_bad_uploads_are_refused_naming_the_problem(api: Api) -> None:
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    r = await api.client.post("/floorplans", params={"name": "x"}, content=svg)
    assert r.status_code == 422 and "PNG or a JPEG" in r.json()["error"]
    huge = b"\x00" * ((8 << 20) + 1)
    r = await api.client.post("/floorplans", params={"name": "y"}, content=huge)
    assert r.status_code == 413
    await api.client.post("/floorplans", params={"name": "z"}, content=png(2, 2))
    r = await api.client.post("/floorplans", params={"name": "z"}, content=png(2, 2))
    assert r.status_code == 422 and r.json()["path"] == "name"
    viewer = await api.headers_for("viewer")
    r = await api.client.post(
        "/floorplans", params={"name": "v"}, content=png(2, 2), headers=viewer
    )
    assert r.status_code == 403
