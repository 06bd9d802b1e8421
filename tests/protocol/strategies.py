"""Hypothesis strategies built from the msgspec schema of the wire messages.

Walking ``msgspec.inspect`` type info keeps the strategies in step with the schema: a new
field or constraint is covered without editing the tests.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from swarmdeploy.protocol.messages import MESSAGE_TYPES, MessageBase

_SMALL = 3


def _int(t: mi.IntType) -> st.SearchStrategy[int]:
    low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**63))
    high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 2**63 - 1)
    return st.integers(min_value=low, max_value=high)


def _float(t: mi.FloatType) -> st.SearchStrategy[float]:
    low = t.ge if t.ge is not None else t.gt
    high = t.le if t.le is not None else t.lt
    return st.floats(
        min_value=low,
        max_value=high,
        exclude_min=t.gt is not None,
        exclude_max=t.lt is not None,
        allow_nan=False,
        allow_infinity=False,
    )


def _str(t: mi.StrType) -> st.SearchStrategy[str]:
    if t.pattern is not None:
        return st.from_regex(t.pattern, fullmatch=True)
    return st.text(min_size=t.min_length or 0, max_size=min(t.max_length or 20, 20))


def for_type(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy producing valid values of ``t`` (kept small)."""
    simple: dict[type[mi.Type], st.SearchStrategy[Any]] = {
        mi.BoolType: st.booleans(),
        mi.NoneType: st.none(),
        mi.AnyType: st.none(),
    }
    if type(t) in simple:
        return simple[type(t)]
    if isinstance(t, mi.IntType):
        return _int(t)
    if isinstance(t, mi.FloatType):
        return _float(t)
    if isinstance(t, mi.StrType):
        return _str(t)
    if isinstance(t, mi.BytesType):
        return st.binary(max_size=min(t.max_length or 64, 64))
    if isinstance(t, mi.ListType | mi.VarTupleType):
        items = st.lists(for_type(t.item_type), max_size=min(t.max_length or _SMALL, _SMALL))
        return items if isinstance(t, mi.ListType) else items.map(tuple)
    if isinstance(t, mi.EnumType):
        members: list[enum.Enum] = list(t.cls)
        return st.sampled_from(members)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(for_type(m) for m in t.types))
    if isinstance(t, mi.DictType):
        return st.just({})
    if isinstance(t, mi.StructType):
        return for_struct(t.cls)
    raise AssertionError(f"no strategy for {t!r}")


def for_struct(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Valid instances of ``cls`` (``extra`` left empty)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.name: for_type(f.type) for f in info.fields if f.name not in ("extra", "v")}
    return st.builds(cls, **fields)


#: Any valid known message.
messages: st.SearchStrategy[MessageBase] = st.one_of(
    *(for_struct(cls) for cls in MESSAGE_TYPES.values())
)

#: Plain MessagePack-able values, for extra fields and garbage.
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
