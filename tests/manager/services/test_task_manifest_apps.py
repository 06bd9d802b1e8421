"""The signed manifest of a task with an app and a full selector (issue 14)."""

from __future__ import annotations

from typing import Any

from swarmdeploy.manager.services.task_signing import task_manifest
from swarmdeploy.protocol.descriptor import parse_descriptor
from swarmdeploy.protocol.manifest import decode_manifest, encode_manifest
from swarmdeploy.storage.records import TaskRecord


def _record(doc: dict[str, Any]) -> TaskRecord:
    desc = parse_descriptor(doc)
    return TaskRecord(
        id="t1",
        description="",
        debug=False,
        descriptor=desc.to_builtins(),
        created_at=1_000,
        expires_at=2_000,
    )


def test_manifest_carries_app_and_merged_selector() -> None:
    doc = {
        "app": "detector",
        "deploy": {
            "run": {"commands": ["./d"]},
            "target": {
                "tags": ["camera"],
                "all": ["outdoor"],
                "not": ["lab"],
                "notIds": ["cam-3"],
                "select": "id:cam-9,!beta",
                "follow": True,
            },
        },
    }
    manifest = task_manifest(_record(doc), "deploy", [])
    assert manifest.app == "detector" and manifest.sequence_key == "deploy:detector"
    assert manifest.target_ids == ["cam-9"] and manifest.target_tags == ["camera"]
    assert manifest.target_all == ["outdoor"]
    assert manifest.target_not == ["beta", "lab"] and manifest.target_not_ids == ["cam-3"]
    assert decode_manifest(encode_manifest(manifest)) == manifest


def test_manifest_of_a_task_without_app_keeps_its_old_bytes() -> None:
    doc = {"deploy": {"run": {"commands": ["./d"]}, "target": {"ids": ["a"], "tags": ["b"]}}}
    data = encode_manifest(task_manifest(_record(doc), "deploy", []))
    for field in (b'"app"', b"target_all", b"target_not"):
        assert field not in data
    explicit = {**doc, "app": "default"}
    assert encode_manifest(task_manifest(_record(explicit), "deploy", [])) == data
