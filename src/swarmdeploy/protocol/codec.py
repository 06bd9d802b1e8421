"""Generic MessagePack codec for msgspec Structs that keeps unknown fields.

``docs/protocol.md`` §2: a receiver keeps the keys its schema does not know in the ``extra``
dict of the struct they belong to (at every nesting level) and writes them back when the
struct is encoded again. msgspec itself drops unknown keys, so decoding happens in two steps:
MessagePack bytes to plain data, then plain data to structs guided by
``msgspec.inspect.type_info``; encoding is the mirror image.

This module knows nothing about particular messages (``protocol.messages`` does). It does no
I/O. Every failure is a :class:`~swarmdeploy.protocol.errors.MessageError`.
"""

from __future__ import annotations

import datetime
import functools
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from swarmdeploy.protocol.errors import MessageError

#: Wire name of the ``extra`` field; never written as such (its content is merged instead).
EXTRA_KEY = "__extra__"

_BUILTIN_TYPES = (bytes, bytearray, memoryview, datetime.datetime)
_S = TypeVar("_S", bound="Extensible")


class Extensible(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every wire struct: ``extra`` holds the fields this version does not know."""

    extra: dict[str, Any] = msgspec.field(default_factory=dict, name=EXTRA_KEY)


def _reject_ext(code: int, data: memoryview) -> Any:
    raise MessageError(f"MessagePack extension type {code} is not allowed")


_DECODER = msgspec.msgpack.Decoder(dict[str, Any], ext_hook=_reject_ext)
_ENCODER = msgspec.msgpack.Encoder()


def unpack(data: bytes | bytearray | memoryview, *, max_bytes: int) -> dict[str, Any]:
    """Decode MessagePack bytes that must hold a map with string keys (no size or depth bombs)."""
    if len(data) > max_bytes:
        raise MessageError(f"message of {len(data)} bytes exceeds {max_bytes} bytes", "too_large")
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        # ValueError: msgspec lets UnicodeDecodeError through for invalid UTF-8 in strings
        raise MessageError(f"not a MessagePack map: {exc}") from None
    except RecursionError:
        raise MessageError("MessagePack data is nested too deeply") from None


def pack(data: dict[str, Any], *, max_bytes: int) -> bytes:
    """Encode plain data as MessagePack, refusing results larger than ``max_bytes``."""
    try:
        out = _ENCODER.encode(data)
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        raise MessageError(f"cannot encode message: {exc}") from None
    if len(out) > max_bytes:
        raise MessageError(f"message of {len(out)} bytes exceeds {max_bytes} bytes", "too_large")
    return out


@functools.cache
def _info(cls: type[Extensible]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info


@functools.cache
def _fields(cls: type[Extensible]) -> dict[str, mi.Field]:
    """Wire name -> field, without ``extra``."""
    return {f.encode_name: f for f in _info(cls).fields if f.name != "extra"}


def _prepare(t: mi.Type, value: Any, path: str) -> Any:
    """Turn nested plain data into structs where the schema expects structs."""
    if isinstance(value, dict):
        members = t.types if isinstance(t, mi.UnionType) else (t,)
        for member in members:
            if isinstance(member, mi.StructType) and issubclass(member.cls, Extensible):
                return _build(member.cls, value, path)
    elif isinstance(value, list) and isinstance(t, mi.ListType):
        return [_prepare(t.item_type, item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _build(cls: type[_S], data: dict[Any, Any], path: str) -> _S:
    fields = _fields(cls)
    tag_field = _info(cls).tag_field
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise MessageError(f"map keys must be strings at {path}, got {type(key).__name__}")
        field = fields.get(key)
        if field is not None:
            known[key] = _prepare(field.type, value, f"{path}.{key}")
        elif key == tag_field:
            known[key] = value
        else:
            extra[key] = value
    try:
        obj = msgspec.convert(known, cls, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc).replace("`$", f"`{path}", 1)
        raise MessageError(f"{cls.__name__}: {text}") from None
    obj.extra = extra
    return obj


def from_wire(cls: type[_S], data: dict[Any, Any]) -> _S:
    """Validate plain data against ``cls``; unknown keys land in ``extra`` (recursively)."""
    return _build(cls, data, "$")


def _merge(t: mi.Type, obj: Any, built: Any) -> None:
    """Put every struct's ``extra`` back into the plain data produced from it."""
    if isinstance(obj, Extensible) and isinstance(built, dict):
        extra = built.pop(EXTRA_KEY, {})  # already plain data: to_builtins converted it
        fields = _fields(type(obj))
        for key, field in fields.items():
            if key in built:
                _merge(field.type, getattr(obj, field.name), built[key])
        for key, value in extra.items():
            if key in fields or key in built:
                raise MessageError(f"extra field {key!r} collides with a known field")
            built[key] = value
    elif isinstance(t, mi.ListType) and isinstance(obj, list) and isinstance(built, list):
        for item, item_built in zip(obj, built, strict=True):
            _merge(t.item_type, item, item_built)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            if isinstance(member, mi.StructType) and isinstance(obj, member.cls):
                _merge(member, obj, built)


def to_wire(obj: Extensible) -> dict[str, Any]:
    """Plain data for ``obj`` with every ``extra`` merged back in (defaults omitted)."""
    try:
        built = msgspec.to_builtins(obj, builtin_types=_BUILTIN_TYPES)
    except (TypeError, msgspec.EncodeError) as exc:
        raise MessageError(f"cannot encode {type(obj).__name__}: {exc}") from None
    assert isinstance(built, dict)
    _merge(_info(type(obj)), obj, built)
    return built
