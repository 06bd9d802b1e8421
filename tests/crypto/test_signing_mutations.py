"""Property: no single changed byte of a signed task gets past verification (hypothesis)."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmdeploy.crypto.rejections import BadSignature, VerificationError
from tests.crypto import signing_rig as rig


@functools.cache
def _signed() -> tuple[bytes, bytes, bytes]:
    operator = rig.new_operator()
    data = rig.manifest()
    return data, operator.sign(data), operator.certificate


def _mutate(data: bytes, index: int, delta: int) -> bytes:
    at = index % len(data)
    return data[:at] + bytes([(data[at] + delta) % 256]) + data[at + 1 :]


_INDEX = st.integers(min_value=0, max_value=10_000)
_DELTA = st.integers(min_value=1, max_value=255)


def test_unchanged_task_verifies() -> None:
    rig.verify(*_signed())  # the control: without a mutation everything passes


@settings(max_examples=300, deadline=None)
@given(index=_INDEX, delta=_DELTA)
def test_any_changed_manifest_byte_bad_signature(index: int, delta: int) -> None:
    data, signature, certificate = _signed()
    with pytest.raises(BadSignature):
        rig.verify(_mutate(data, index, delta), signature, certificate)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(min_value=0, max_value=63), delta=_DELTA)
def test_any_changed_signature_byte_bad_signature(index: int, delta: int) -> None:
    data, signature, certificate = _signed()
    with pytest.raises(BadSignature):
        rig.verify(data, _mutate(signature, index, delta), certificate)


@settings(max_examples=300, deadline=None)
@given(index=_INDEX, delta=_DELTA)
def test_any_changed_certificate_byte_refused(index: int, delta: int) -> None:
    data, signature, certificate = _signed()
    with pytest.raises(VerificationError):
        rig.verify(data, signature, _mutate(certificate, index, delta))
