"""The new-deployment form's document: form fields -> task descriptor (pure, tested).

The form writes the same descriptor an operator would write in YAML (DESIGN.md "Task
descriptor"); the server validates it (``POST /tasks/preview``, ``POST /tasks``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml


def lines(text: str | None) -> list[str]:
    """Non-empty lines of a text area, stripped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def words(text: str | None) -> list[str]:
    """Comma- or space-separated words."""
    return [w for w in (text or "").replace(",", " ").split() if w]


@dataclasses.dataclass
class DeploymentForm:
    """What the form holds."""

    description: str = ""
    debug: bool = False
    source_task: str = ""  # reuse the artifacts of an earlier task
    build_host: str = ""
    build_commands: str = ""
    build_artifacts: str = ""
    install: str = ""
    run: str = ""
    auto_restart: bool = False
    network: bool = False
    target_ids: str = ""
    target_tags: str = ""

    def descriptor(self) -> dict[str, Any]:
        """The task descriptor; empty sections are left out (the server names what is
        missing)."""
        doc: dict[str, Any] = {}
        if self.description.strip():
            doc["description"] = self.description.strip()
        if self.debug:
            doc["debug"] = True
        if self.source_task.strip():
            doc["source"] = {"task": self.source_task.strip()}
        if self.build_host.strip():
            doc["build"] = {
                "host": self.build_host.strip(),
                "commands": lines(self.build_commands),
                "artifacts": lines(self.build_artifacts),
            }
        deploy: dict[str, Any] = {}
        if lines(self.install):
            deploy["install"] = {"commands": lines(self.install)}
        if lines(self.run):
            deploy["run"] = {"commands": lines(self.run), "autoRestart": self.auto_restart}
        target: dict[str, Any] = {}
        if words(self.target_ids):
            target["ids"] = words(self.target_ids)
        if words(self.target_tags):
            target["tags"] = words(self.target_tags)
        if deploy or target:
            deploy["target"] = target
            doc["deploy"] = deploy
        if self.network:
            doc["sandbox"] = {"network": True}
        return doc


def to_yaml(document: dict[str, Any]) -> str:
    """``document`` as block YAML, keys in the descriptor's own order."""
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)


def duplicate(task: dict[str, Any]) -> dict[str, Any]:
    """A new descriptor that deploys what ``task`` (an API task document) deployed, to the
    same selector: its archive or build artifacts are reused through ``source.task``."""
    doc: dict[str, Any] = {"description": f"{task.get('description') or task['id']} (again)"}
    if task.get("debug"):
        doc["debug"] = True
    if task.get("source") or task.get("build"):
        doc["source"] = {"task": task["id"]}
    deploy = task.get("deploy") or {}
    out: dict[str, Any] = {}
    install = (deploy.get("install") or {}).get("commands")
    if install:
        out["install"] = {"commands": list(install)}
    run = deploy.get("run") or {}
    if run.get("commands"):
        out["run"] = {
            "commands": list(run["commands"]),
            "autoRestart": bool(run.get("autoRestart")),
        }
    selector = deploy.get("target") or {}
    target = {k: list(selector[k]) for k in ("ids", "tags") if selector.get(k)}
    if out or target:
        out["target"] = target
        doc["deploy"] = out
    sandbox = task.get("sandbox") or {}
    if sandbox.get("network"):
        doc["sandbox"] = {"network": True}
    return doc
