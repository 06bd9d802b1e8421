"""Decoding of task descriptor bodies: JSON, or YAML (``yaml.safe_load``) by Content-Type.

Parsing runs in a worker thread, one at a time, after the bounds of
``descriptor_guard`` (size of YAML, number of entries) were checked.
"""

from __future__ import annotations

import json

import yaml
from fastapi import Request

from swarmdeploy.manager.errors import BadRequest, UnsupportedMedia
from swarmdeploy.manager.services.descriptor_guard import DescriptorGuard

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"", "application/json"})

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(body: bytes) -> object:
    try:
        return yaml.load(body.decode("utf-8"), Loader=_Loader)  # noqa: S506 - a safe loader
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise BadRequest(f"malformed YAML: {exc}".replace("\n", " ")) from None
    except RecursionError:
        raise BadRequest("the YAML document is nested too deeply") from None


def _load_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the JSON document is nested too deeply") from None


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower case ("" if absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def decode_document(
    request: Request, guard: DescriptorGuard, *, always_yaml: bool = False
) -> object:
    """The decoded body: YAML for YAML media types (or always, for ``/orders``), JSON for
    ``application/json`` or no Content-Type; :class:`UnsupportedMedia` otherwise;
    :class:`TooLarge` over a bound of ``guard``."""
    kind = media_type(request)
    if not always_yaml and kind not in YAML_TYPES and kind not in JSON_TYPES:
        raise UnsupportedMedia(
            f"Content-Type {kind} is not supported: send application/json or application/yaml"
        )
    as_yaml = always_yaml or kind in YAML_TYPES
    body = await _read(request, guard.max_yaml_bytes if as_yaml else None, guard)
    if not body.strip():
        raise BadRequest("the body is empty: send a task descriptor")
    guard.check(body, yaml=as_yaml)
    return await guard.parse(_load_yaml if as_yaml else _load_json, body)


async def _read(request: Request, limit: int | None, guard: DescriptorGuard) -> bytes:
    """The body, refused (:class:`TooLarge`) as soon as it grows past ``limit``: a 64 MiB
    YAML body is not read whole before the answer."""
    if limit is None:
        return await request.body()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            guard.check(bytes(body), yaml=True)  # raises TooLarge naming the YAML limit
    return bytes(body)
