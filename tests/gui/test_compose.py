"""Form fields -> task descriptor, YAML, and duplicating a task."""

from __future__ import annotations

import yaml

from swarmdeploy.gui.compose import DeploymentForm, duplicate, to_yaml
from swarmdeploy.protocol.descriptor import parse_descriptor


def test_form_writes_a_descriptor_the_schema_accepts() -> None:
    form = DeploymentForm(
        description="camera detector 2.3",
        install="chmod +x app\n\n  ./setup.sh  \n",
        run="./app --serve",
        auto_restart=True,
        target_ids="cam-1, cam-2",
        target_tags="camera lab",
        network=True,
    )
    doc = form.descriptor()
    assert doc == {
        "description": "camera detector 2.3",
        "deploy": {
            "install": {"commands": ["chmod +x app", "./setup.sh"]},
            "run": {"commands": ["./app --serve"], "autoRestart": True},
            "target": {"ids": ["cam-1", "cam-2"], "tags": ["camera", "lab"]},
        },
        "sandbox": {"network": True},
    }
    parse_descriptor(doc)  # raises if the schema refuses it
    assert yaml.safe_load(to_yaml(doc)) == doc
    assert to_yaml(doc).startswith("description: camera detector 2.3\n")


def test_build_form_and_reused_artifacts() -> None:
    doc = DeploymentForm(
        build_host="builder", build_commands="make", build_artifacts="out/app", run="./app",
        target_tags="arm",
    ).descriptor()  # fmt: skip
    assert doc["build"] == {"host": "builder", "commands": ["make"], "artifacts": ["out/app"]}
    reuse = DeploymentForm(source_task="swift-otter-1a2b", run="./app", target_tags="x")
    assert reuse.descriptor()["source"] == {"task": "swift-otter-1a2b"}
    assert DeploymentForm().descriptor() == {}


def test_duplicate_reuses_the_task_and_keeps_its_selector() -> None:
    task = {
        "id": "swift-otter-1a2b",
        "description": "v1",
        "debug": True,
        "source": {"sha256": "ab" * 32, "size": 10},
        "deploy": {
            "install": {"commands": ["./i"]},
            "run": {"commands": ["./r"], "autoRestart": False},
            "target": {"ids": ["a"], "tags": ["t"]},
        },
        "sandbox": {"network": False},
    }
    doc = duplicate(task)
    assert doc == {
        "description": "v1 (again)",
        "debug": True,
        "source": {"task": "swift-otter-1a2b"},
        "deploy": {
            "install": {"commands": ["./i"]},
            "run": {"commands": ["./r"], "autoRestart": False},
            "target": {"ids": ["a"], "tags": ["t"]},
        },
    }
    parse_descriptor(doc)
