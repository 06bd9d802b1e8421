"""``POST /tasks`` as ``multipart/form-data``: a ``descriptor`` part and an ``archive`` part.

Large sources need not be base64-inlined (issue 4): the archive part is streamed straight
into a file in ``spool_dir`` (which the caller moves into the blob store), so memory stays
bounded by one network chunk whatever the archive's size. The descriptor part is kept in
memory up to ``max_descriptor_bytes``. The whole body is also capped by the body-limit
middleware (413 ``body_too_large``); an archive over ``max_archive_bytes`` is a 413 too.

The descriptor is YAML (JSON is YAML too); a part with ``Content-Type: application/json`` is
read as JSON. Parts other than these two, repeated parts or a missing part are 422 with
``path`` = ``multipart.<part>``; a body that is not valid multipart is a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from swarmdeploy.manager.api.middleware import BodyTooLarge
from swarmdeploy.manager.errors import BadRequest, InvalidInput

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MULTIPART = "multipart/form-data"
DESCRIPTOR_PART = "descriptor"
ARCHIVE_PART = "archive"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclasses.dataclass(slots=True)
class _Part:
    name: str = ""
    media_type: str = ""
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    field: bytes = b""
    value: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class TaskUpload:
    """A parsed multipart task: the descriptor's bytes and media type, and the archive file
    (owned by the caller: move it or delete it)."""

    descriptor: bytes
    descriptor_type: str
    archive: Path
    archive_bytes: int


class _Collector:
    """Callbacks of the streaming parser: headers and descriptor bytes in memory, archive
    bytes queued for the file (written between network chunks, off the event loop)."""

    def __init__(self, max_descriptor_bytes: int) -> None:
        self.max_descriptor_bytes = max_descriptor_bytes
        self.part = _Part()
        self.seen: set[str] = set()
        self.descriptor: _Part | None = None
        self.pending: list[bytes] = []
        self.ended = False

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers.append((self.part.field.strip().lower(), self.part.value.strip()))
        self.part.field = self.part.value = b""

    def on_headers_finished(self) -> None:
        headers = dict(self.part.headers)
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("latin-1")
        if name not in (DESCRIPTOR_PART, ARCHIVE_PART):
            raise InvalidInput(
                f"unknown part {name!r}: send the parts 'descriptor' and 'archive'",
                path=f"multipart.{name or '?'}",
            )
        if name in self.seen:
            raise InvalidInput(f"the part {name!r} is given twice", path=f"multipart.{name}")
        self.seen.add(name)
        self.part.name = name
        media, _ = parse_options_header(headers.get(b"content-type", b""))
        self.part.media_type = media.decode("latin-1").lower()
        if name == DESCRIPTOR_PART:
            self.descriptor = self.part

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.name == ARCHIVE_PART:
            self.pending.append(data[start:end])
            return
        self.part.field += data[start:end]
        if len(self.part.field) > self.max_descriptor_bytes:
            raise InvalidInput(
                f"the descriptor part is larger than {self.max_descriptor_bytes} bytes",
                path=f"multipart.{DESCRIPTOR_PART}",
            )

    def on_end(self) -> None:
        self.ended = True


def _boundary(request: Request) -> bytes:
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data needs a boundary parameter in its Content-Type")
    return boundary


def _write(fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


async def read_task_upload(
    request: Request, *, spool_dir: Path, max_descriptor_bytes: int, max_archive_bytes: int
) -> TaskUpload:
    """Stream a multipart task body: the archive into a new file in ``spool_dir``, the
    descriptor into memory. The file is removed again if anything fails."""
    collector = _Collector(max_descriptor_bytes)
    try:
        parser = MultipartParser(_boundary(request), _callbacks(collector))
    except FormParserError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    fd, path = await asyncio.to_thread(_new_file, spool_dir)
    size = 0
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if collector.pending:
                    size += sum(len(c) for c in collector.pending)
                    if size > max_archive_bytes:
                        raise BodyTooLarge
                    await asyncio.to_thread(_write, fd, collector.pending)
                    collector.pending = []
            parser.finalize()
        except FormParserError as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None
        return _finish(collector, path, size)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def _finish(collector: _Collector, path: Path, size: int) -> TaskUpload:
    if not collector.ended:
        raise BadRequest("the multipart body ended before its closing boundary")
    if collector.descriptor is None:
        raise InvalidInput(
            "the part 'descriptor' (the task descriptor, YAML or JSON) is missing",
            path=f"multipart.{DESCRIPTOR_PART}",
        )
    if ARCHIVE_PART not in collector.seen:
        raise InvalidInput(
            "the part 'archive' (a zip or tar.gz file) is missing; without an archive, post "
            "the descriptor alone as JSON or YAML",
            path=f"multipart.{ARCHIVE_PART}",
        )
    part = collector.descriptor
    return TaskUpload(part.field, part.media_type, path, size)


def _callbacks(c: _Collector) -> MultipartCallbacks:
    return {
        "on_part_begin": c.on_part_begin,
        "on_header_field": c.on_header_field,
        "on_header_value": c.on_header_value,
        "on_header_end": c.on_header_end,
        "on_headers_finished": c.on_headers_finished,
        "on_part_data": c.on_part_data,
        "on_end": c.on_end,
    }


def _new_file(directory: Path) -> tuple[int, Path]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    while True:
        path = directory / f"upload-{os.urandom(8).hex()}.part"
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue


def decode_descriptor(data: bytes, media_type: str) -> object:
    """The descriptor part decoded: JSON for ``application/json``, else YAML (safe)."""
    if not data.strip():
        raise InvalidInput("the descriptor part is empty", path=f"multipart.{DESCRIPTOR_PART}")
    try:
        text = data.decode("utf-8")
        if media_type == "application/json":
            return json.loads(text)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except UnicodeDecodeError:
        raise BadRequest("the descriptor part is not UTF-8 text") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BadRequest(f"malformed descriptor: {exc}".replace("\n", " ")) from None
    except RecursionError:
        raise BadRequest("the descriptor is nested too deeply") from None
