"""Submitted documents to descriptor checks: the uploaded archive standing for source.zip."""

from __future__ import annotations

import pytest

from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.manager.services.descriptor_input import input_error, with_archive
from swarmdeploy.protocol.descriptor import parse_descriptor
from swarmdeploy.protocol.errors import DescriptorError

BUILD = {"build": {"host": "b", "commands": ["make"], "artifacts": ["app"]}}


def test_archive_head_stands_for_source_zip_and_passes_the_check() -> None:
    doc = with_archive({**BUILD, "source": {}}, b"\x1f\x8b\x08\x00")
    assert doc == {**BUILD, "source": {"zip": "H4sIAA=="}}
    assert parse_descriptor(doc).build is not None


def test_documents_the_check_explains_pass_through_unchanged() -> None:
    assert with_archive(["not", "a", "mapping"], b"PK") == ["not", "a", "mapping"]
    odd = {**BUILD, "source": "text"}
    assert with_archive(odd, b"PK") is odd


def test_source_named_twice_is_refused_at_its_field() -> None:
    with pytest.raises(InvalidInput) as info:
        with_archive({**BUILD, "source": {"order": "t1"}}, b"PK")
    assert info.value.path == "$.source.task"


def test_errors_about_the_stand_in_name_the_multipart_part() -> None:
    exc = DescriptorError("source.zip must be a zip or tar.gz archive", "$.source.zip")
    assert input_error(exc, archive=True).path == "multipart.archive"
    assert input_error(exc).path == "$.source.zip"
    unknown = DescriptorError("Object contains unknown field `colour`", "$.deploy")
    assert input_error(unknown).path == "$.deploy.colour"
