"""From a submitted document to what :func:`~swarmdeploy.protocol.descriptor.parse_descriptor`
checks, and from its errors to API errors.

An archive uploaded apart from the descriptor (``multipart/form-data``, docs/api.md) stands in
for ``source.zip`` while the descriptor is checked (:func:`with_archive`); what the check then
says about ``source.zip`` concerns the uploaded part (``multipart.archive``).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.protocol.errors import DescriptorError

#: Where the multipart archive part is named in error answers.
ARCHIVE_PATH = "multipart.archive"

_UNKNOWN_FIELD_RE = re.compile(r"^Object contains unknown field `([^`]+)`$")


def input_error(exc: DescriptorError, *, archive: bool = False) -> InvalidInput:
    """Translate a descriptor error; an unknown field's path names the field itself. With an
    uploaded ``archive``, what the descriptor check says about ``source.zip`` (which stood
    for the archive, see :func:`with_archive`) concerns the multipart part."""
    path, message = exc.path, exc.message
    match = _UNKNOWN_FIELD_RE.match(message)
    if match:
        path = f"{path}.{match.group(1)}"
        message = f"unknown field {match.group(1)!r} at {path}"
    if archive and path == "$.source.zip":
        path, message = ARCHIVE_PATH, "the uploaded archive must be a zip or tar.gz file"
    return InvalidInput(message, path=path, code=exc.code)


def read_head(path: Path) -> bytes:
    """The first 4 bytes of a file (its archive signature); blocking."""
    with path.open("rb") as fh:
        return fh.read(4)


def with_archive(document: object, head: bytes) -> object:
    """The document as the descriptor check sees it when the archive was uploaded apart:
    ``source.zip`` stands for the archive (its first bytes, which the check inspects for a
    zip or tar.gz signature). Refuses a document that names a source itself."""
    if not isinstance(document, dict):
        return document  # parse_descriptor explains
    source = document.get("source")
    if source is None:
        source = {}
    if not isinstance(source, dict):
        return document
    if "zip" in source:
        raise InvalidInput(
            "the archive was uploaded as the multipart part 'archive': remove source.zip "
            "from the descriptor (give the archive one way only)",
            path="$.source.zip",
        )
    if source.get("task") is not None or source.get("order") is not None:
        raise InvalidInput(
            "source.task reuses an earlier build's artifacts: do not upload an archive too",
            path="$.source.task",
        )
    return {**document, "source": {**source, "zip": base64.b64encode(head).decode()}}
