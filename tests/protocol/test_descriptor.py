"""Task descriptor validation: the original's examples, aliases and clear errors."""

from __future__ import annotations

import base64
import io
import pathlib
import zipfile
from typing import Any

import pytest
import yaml

from swarmdeploy.protocol.descriptor import parse_descriptor
from swarmdeploy.protocol.errors import DescriptorError

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "original"


def _zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.sh", "echo hi\n")
    return base64.b64encode(buf.getvalue()).decode()


def _deploy(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"deploy": {"run": {"commands": ["./app"]}, "target": {"ids": ["a"]}}}
    doc.update(extra)
    return doc


def _error(doc: object) -> DescriptorError:
    with pytest.raises(DescriptorError) as info:
        parse_descriptor(doc)
    return info.value


@pytest.mark.parametrize(
    "name",
    ["simple.yml", "zip-build-and-deploy.yml", "zip-deploy-python.yml", "zip-deploy.yml"],
)
def test_original_example_validates(name: str) -> None:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    desc = parse_descriptor(doc)
    assert desc.deploy is not None
    assert desc.debug is True
    assert desc.target_ids or desc.target_tags


def test_source_paths_example_refused_with_reason() -> None:
    doc = yaml.safe_load((EXAMPLES / "wiki-simple-scenario.yml").read_text())
    err = _error(doc)
    assert err.path == "$.source.paths"
    assert "source.zip" in err.message


def test_autorestart_alias_and_camel_case_both_set_flag() -> None:
    for key in ("autoRestart", "autorestart"):
        doc = _deploy()
        doc["deploy"]["run"][key] = True
        desc = parse_descriptor(doc)
        assert desc.deploy is not None and desc.deploy.run is not None
        assert desc.deploy.run.auto_restart is True


def test_both_autorestart_spellings_refused() -> None:
    doc = _deploy()
    doc["deploy"]["run"].update({"autoRestart": True, "autorestart": False})
    assert _error(doc).path == "$.deploy.run"


def test_source_order_alias_maps_to_task() -> None:
    desc = parse_descriptor(_deploy(source={"order": "brave-fox"}))
    assert desc.source is not None and desc.source.task == "brave-fox"


def test_unknown_field_error_names_field_and_path() -> None:
    doc = _deploy()
    doc["deploy"]["run"]["restart"] = True
    err = _error(doc)
    assert "restart" in err.message
    assert err.path == "$.deploy.run"


def test_wrong_type_error_names_path() -> None:
    doc = _deploy()
    doc["deploy"]["run"]["commands"] = "./app"
    assert _error(doc).path == "$.deploy.run.commands"


def test_neither_build_nor_deploy_refused() -> None:
    assert "build or a deploy" in _error({"description": "x"}).message


def test_build_without_source_refused_not_crash() -> None:
    doc = {"build": {"host": "h", "commands": ["make"], "artifacts": ["app"]}}
    assert _error(doc).path == "$.source"


def test_build_with_source_task_refused() -> None:
    doc = {
        "source": {"task": "old-one"},
        "build": {"host": "h", "commands": ["make"], "artifacts": ["app"]},
    }
    assert _error(doc).path == "$.build"


@pytest.mark.parametrize("artifact", ["/etc/passwd", "../up", "a/../../b", ""])
def test_bad_artifact_path_refused(artifact: str) -> None:
    doc = {
        "source": {"zip": _zip_b64()},
        "build": {"host": "h", "commands": ["make"], "artifacts": [artifact]},
    }
    assert _error(doc).path == "$.build.artifacts[0]"


def test_deploy_without_targets_refused() -> None:
    doc = {"deploy": {"run": {"commands": ["x"]}, "target": {"ids": None, "tags": []}}}
    assert _error(doc).path == "$.deploy.target"


def test_deploy_without_commands_refused() -> None:
    doc = {"deploy": {"target": {"ids": ["a"]}}}
    assert _error(doc).path == "$.deploy"


def test_empty_command_refused_with_index() -> None:
    doc = _deploy()
    doc["deploy"]["run"]["commands"] = ["ok", "  "]
    assert _error(doc).path == "$.deploy.run.commands[1]"


def test_invalid_base64_zip_refused() -> None:
    assert _error(_deploy(source={"zip": "not base64!"})).path == "$.source.zip"


def test_non_archive_zip_refused() -> None:
    raw = base64.b64encode(b"plain text").decode()
    assert _error(_deploy(source={"zip": raw})).path == "$.source.zip"


def test_zip_and_task_together_refused() -> None:
    assert _error(_deploy(source={"zip": _zip_b64(), "task": "x"})).path == "$.source"


def test_invalid_tag_refused_with_index() -> None:
    doc = {"deploy": {"run": {"commands": ["x"]}, "target": {"tags": ["ok", "bad tag"]}}}
    assert _error(doc).path == "$.deploy.target.tags[1]"


def test_non_mapping_document_refused() -> None:
    assert "mapping" in _error(["a"]).message


def test_to_builtins_round_trips() -> None:
    desc = parse_descriptor(_deploy(description="hello", debug=True))
    again = parse_descriptor(desc.to_builtins())
    assert again == desc


def test_name_with_trailing_newline_refused() -> None:
    doc = {"deploy": {"run": {"commands": ["x"]}, "target": {"ids": ["abc\n"]}}}
    assert _error(doc).path == "$.deploy.target.ids[0]"


def test_sandbox_devices_paths_groups_and_limits_validate() -> None:
    section = {
        "network": True,
        "devices": ["/dev/ttyUSB0"],
        "paths": [{"path": "/srv/maps"}, {"path": "/var/lib/robot", "rw": True}],
        "groups": ["dialout", "video"],
        "limits": {"processes": 64, "memoryBytes": 1 << 28, "cpuSeconds": 60},
    }
    desc = parse_descriptor(_deploy(sandbox=section))
    assert desc.sandbox is not None and desc.sandbox.limits is not None
    assert desc.sandbox.limits.memory_bytes == 1 << 28
    assert desc.to_builtins()["sandbox"] == section


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"devices": ["ttyUSB0"]}, "$.sandbox.devices[0]"),
        ({"devices": ["/dev/../etc/shadow"]}, "$.sandbox.devices[0]"),
        ({"paths": [{"path": "/srv/"}]}, "$.sandbox.paths[0].path"),
        ({"paths": [{"path": "/"}]}, "$.sandbox.paths[0].path"),
        ({"paths": [{"path": "/a"}, {"path": "/a", "rw": True}]}, "$.sandbox.paths[1]"),
        ({"paths": [{"path": "/a", "mode": "rw"}]}, "$.sandbox.paths[0]"),
        ({"groups": ["root group"]}, "$.sandbox.groups[0]"),
        ({"limits": {"processes": 0}}, "$.sandbox.limits.processes"),
        ({"limits": {"memory": 1}}, "$.sandbox.limits"),
        ({"devices": [f"/dev/d{i}" for i in range(33)]}, "$.sandbox.devices"),
    ],
)
def test_bad_sandbox_section_refused_naming_the_field(section: dict[str, Any], path: str) -> None:
    assert _error(_deploy(sandbox=section)).path == path


def test_deploy_requires_round_trips_with_its_field_names() -> None:
    requires = {"arch": ["x86_64", "arm64"], "minFreeDiskMB": 500, "minFreeMemoryMB": 64}
    doc = _deploy()
    doc["deploy"]["requires"] = requires
    assert parse_descriptor(doc).to_builtins()["deploy"]["requires"] == requires


@pytest.mark.parametrize(
    ("requires", "path"),
    [
        ({"minFreeDiskMb": 5}, "$.deploy.requires"),
        ({"minFreeDiskMB": 0}, "$.deploy.requires.minFreeDiskMB"),
        ({"minFreeMemoryMB": "lots"}, "$.deploy.requires.minFreeMemoryMB"),
        ({"arch": []}, "$.deploy.requires.arch"),
        ({"arch": ["x86_64", "no spaces"]}, "$.deploy.requires.arch[1]"),
    ],
)
def test_deploy_requires_errors_name_the_field(requires: dict[str, Any], path: str) -> None:
    doc = _deploy()
    doc["deploy"]["requires"] = requires
    assert _error(doc).path == path


def test_deploy_health_round_trips_with_its_field_names() -> None:
    health = {"http": "http://localhost:8080/ready", "upFor": 10, "interval": 0.5, "attempts": 4}
    doc = _deploy()
    doc["deploy"]["health"] = health
    assert parse_descriptor(doc).to_builtins()["deploy"]["health"] == health


@pytest.mark.parametrize(
    ("health", "path"),
    [
        ({}, "$.deploy.health"),
        ({"command": "true", "retries": 3}, "$.deploy.health"),
        ({"http": "http://10.0.0.1/health"}, "$.deploy.health.http"),
        ({"http": "https://127.0.0.1/"}, "$.deploy.health.http"),
        ({"http": "http://user:pw@127.0.0.1/"}, "$.deploy.health.http"),
        ({"http": "http://127.0.0.1:99999/"}, "$.deploy.health.http"),
        ({"command": ""}, "$.deploy.health.command"),
        ({"upFor": 0}, "$.deploy.health.upFor"),
        ({"command": "true", "interval": 0}, "$.deploy.health.interval"),
        ({"command": "true", "attempts": 0}, "$.deploy.health.attempts"),
        ({"command": "true", "attempts": 1000}, "$.deploy.health.attempts"),
        ({"upFor": 100, "deadline": 50}, "$.deploy.health.deadline"),
    ],
)
def test_deploy_health_errors_name_the_field(health: dict[str, Any], path: str) -> None:
    doc = _deploy()
    doc["deploy"]["health"] = health
    assert _error(doc).path == path


def test_deploy_health_needs_run_commands() -> None:
    doc = {"deploy": {"install": {"commands": ["true"]}, "target": {"ids": ["a"]}}}
    doc["deploy"]["health"] = {"command": "true"}
    error = _error(doc)
    assert error.path == "$.deploy.health" and "run.commands" in str(error)
