"""The task descriptor: what an operator submits to deploy (and optionally build) software.

The schema is a superset of the original tool's "order" documents (see
``docs/task-descriptor.md``): ``run.autorestart`` is accepted as an alias of
``run.autoRestart`` and ``source.order`` as an alias of ``source.task``. ``source.paths`` is
refused because it let API users ship arbitrary files of the manager host to devices.

:func:`parse_descriptor` is the only entry point; it takes an already decoded document (the
manager decodes JSON or YAML) and returns a validated :class:`TaskDescriptor` or raises
:class:`~swarmdeploy.protocol.errors.DescriptorError` naming the offending field. The
``deploy.health`` and ``rollout`` sections and their checks live in :mod:`.descriptor_health`
and :mod:`.descriptor_rollout` (their public names are re-exported here); what the sections
share in :mod:`.descriptor_common`.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from typing import Annotated, Any

import msgspec

from swarmdeploy.protocol.descriptor_common import (
    APP_NAME_PATTERN,
    DEFAULT_APP,
    GROUP_NAME_PATTERN,
    MAX_COMMAND_CHARS,
    MAX_COMMANDS,
    MAX_SELECTORS,
    NAME_RE,
    Strict,
    check_commands,
)
from swarmdeploy.protocol.descriptor_health import Health, check_health, check_health_url
from swarmdeploy.protocol.descriptor_rollout import Rollout, RolloutGroup, check_rollout
from swarmdeploy.protocol.errors import DescriptorError
from swarmdeploy.protocol.selector import Selector, check_name, parse_selector

#: Public names; those of the health and rollout sections are re-exported from their modules.
__all__ = [
    "APP_NAME_PATTERN",
    "DEFAULT_APP",
    "DEFAULT_EXPIRES_IN_S",
    "DEFAULT_STANDING_EXPIRES_IN_S",
    "GROUP_NAME_PATTERN",
    "MAX_COMMANDS",
    "MAX_COMMAND_CHARS",
    "MAX_EXPIRES_IN_S",
    "MAX_REQUIRED_ARCHS",
    "MAX_SANDBOX_GRANTS",
    "MAX_SELECTORS",
    "Build",
    "Commands",
    "Deploy",
    "Health",
    "Requires",
    "Rollout",
    "RolloutGroup",
    "Run",
    "Sandbox",
    "SandboxLimits",
    "SandboxPath",
    "Source",
    "TargetSelector",
    "TaskDescriptor",
    "check_absolute_path",
    "check_health_url",
    "check_relative_path",
    "is_valid_name",
    "parse_descriptor",
]

#: Default time a task waits for offline targets before they are marked ``expired``.
DEFAULT_EXPIRES_IN_S = 7 * 24 * 3600
MAX_EXPIRES_IN_S = 365 * 24 * 3600

_APP_RE = re.compile(APP_NAME_PATTERN)
#: Default delivery window of a standing task (``deploy.target.follow``): late devices get
#: its release until then (docs/adr/0010).
DEFAULT_STANDING_EXPIRES_IN_S = 365 * 24 * 3600
_GROUP_RE = re.compile(GROUP_NAME_PATTERN)
#: Most devices, paths or groups one task may ask for.
MAX_SANDBOX_GRANTS = 32
_PositiveLimit = Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class Source(Strict):
    """Where the package files come from: an inline archive or an earlier task's artifacts."""

    zip: str | None = None
    task: str | None = None


class Build(Strict):
    """Build instructions, run sequentially on the build host."""

    host: str | None = None
    commands: list[str] | None = None
    artifacts: list[str] | None = None


class Commands(Strict):
    """A list of shell commands (install: sequential, abort on first failure)."""

    commands: list[str] | None = None


class Run(Strict):
    """Run commands: started in parallel and supervised."""

    commands: list[str] | None = None
    auto_restart: bool = False


class TargetSelector(Strict):
    """Which devices receive the deploy stage (``docs/selectors.md``): a target matches when
    its id is listed OR it carries any listed tag (DESIGN.md), AND it carries every tag of
    ``all``, AND none of ``not`` (nor is its id in ``notIds``). ``select`` is the same in
    the text form (``camera,+outdoor,!lab``), merged with the lists.

    ``follow``: a *standing* task -- devices that match later (registered, or tags edited)
    get its release too (docs/adr/0010). ``remove``: with ``follow``, a device that stops
    matching has the release stopped."""

    ids: list[str] | None = None
    tags: list[str] | None = None
    all: list[str] | None = None
    not_: list[str] | None = msgspec.field(default=None, name="not")
    not_ids: list[str] | None = None
    select: str | None = None
    follow: bool = False
    remove: bool = False


#: Most architectures ``deploy.requires.arch`` may list.
MAX_REQUIRED_ARCHS = 16
_MegaBytes = Annotated[int, msgspec.Meta(ge=1, le=2**40)]
_ARCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")


class Requires(Strict):
    """What a device must offer to accept the task; checked by the agent at assessment
    (a device that does not is ``declined`` naming the requirement) and again on the signed
    manifest. ``arch``: any of these architectures (``uname -m`` names; ``amd64``/``arm64``
    spellings accepted); the two minima are free space of the agent's data dir and
    available memory, in MB (10^6 bytes)."""

    arch: list[str] | None = None
    min_free_disk_mb: _MegaBytes | None = msgspec.field(default=None, name="minFreeDiskMB")
    min_free_memory_mb: _MegaBytes | None = msgspec.field(default=None, name="minFreeMemoryMB")


class Deploy(Strict):
    """What to do on the target devices."""

    install: Commands | None = None
    run: Run | None = None
    target: TargetSelector | None = None
    requires: Requires | None = None
    health: Health | None = None


class SandboxLimits(Strict):
    """Resource limits a task asks for, each at most the device's ceiling (a larger one is
    declined naming the field); an unset one gets the ceiling. ``processes`` counts every
    process and thread of the sandbox user on the device; ``memoryBytes`` is heap and
    private mappings (``RLIMIT_DATA``); ``cpuSeconds`` is CPU time per process."""

    processes: _PositiveLimit | None = None
    memory_bytes: _PositiveLimit | None = None
    file_size_bytes: _PositiveLimit | None = None
    cpu_seconds: _PositiveLimit | None = None
    open_files: _PositiveLimit | None = None


class SandboxPath(Strict):
    """A host directory (or file) the task's commands see at the same path; read-only
    unless ``rw``."""

    path: str
    rw: bool = False


class Sandbox(Strict):
    """The sandbox policy a task asks for (bound in its signed manifest); optional, and
    without it the strict default applies (no network, no devices, no extra paths or
    groups, the device's limit ceilings). Devices, paths and groups are granted only where
    the device's agent allows them (``--allow-device``, ``--allow-path``,
    ``--allow-group``); otherwise the device declines the task naming what it refused."""

    network: bool = False
    devices: list[str] | None = None
    paths: list[SandboxPath] | None = None
    groups: list[str] | None = None
    limits: SandboxLimits | None = None


class TaskDescriptor(Strict):
    """A validated task descriptor. Instances returned by :func:`parse_descriptor` are valid."""

    description: str = ""
    debug: bool = False
    #: The app this task delivers a release of (None: the default app).
    app: str | None = None
    #: A free label of the release (shown in ``GET /apps``).
    version: str | None = None
    source: Source | None = None
    build: Build | None = None
    deploy: Deploy | None = None
    sandbox: Sandbox | None = None
    rollout: Rollout | None = None
    expires_in: int | None = None

    @property
    def app_name(self) -> str:
        """The app of the task (:data:`DEFAULT_APP` when it names none)."""
        return self.app or DEFAULT_APP

    @property
    def standing(self) -> bool:
        """Whether the deploy target is followed (``deploy.target.follow``)."""
        sel = self.deploy.target if self.deploy else None
        return bool(sel and sel.follow)

    @property
    def expires_in_s(self) -> int:
        """``expiresIn``, or its default (longer for a standing task)."""
        if self.expires_in is not None:
            return self.expires_in
        return DEFAULT_STANDING_EXPIRES_IN_S if self.standing else DEFAULT_EXPIRES_IN_S

    @property
    def selector(self) -> Selector:
        """The deploy target as one :class:`Selector` (empty when there is none)."""
        sel = self.deploy.target if self.deploy else None
        if sel is None:
            return Selector()
        text = parse_selector(sel.select, "$.deploy.target.select") if sel.select else Selector()
        return Selector.of(
            [*(sel.ids or []), *text.ids],
            [*(sel.tags or []), *text.tags],
            [*(sel.all or []), *text.all_tags],
            [*(sel.not_ or []), *text.not_tags],
            [*(sel.not_ids or []), *text.not_ids],
        )

    @property
    def target_ids(self) -> list[str]:
        """Target ids named by the deploy section (empty when there is none)."""
        return list(self.selector.ids)

    @property
    def target_tags(self) -> list[str]:
        """Any-of tags named by the deploy section (empty when there is none)."""
        return list(self.selector.tags)

    def to_builtins(self) -> dict[str, Any]:
        """The descriptor as plain JSON-able data (canonical field names)."""
        data = msgspec.to_builtins(self)
        assert isinstance(data, dict)
        return data


_PATH_RE = re.compile(r" - at `(\$[^`]*)`$")


def _apply_aliases(doc: dict[str, Any]) -> dict[str, Any]:
    """Rename the original tool's field names to ours (copying, never mutating ``doc``)."""
    doc = dict(doc)
    source = doc.get("source")
    if isinstance(source, dict):
        source = dict(source)
        if "paths" in source:
            raise DescriptorError(
                "source.paths is not supported: it would ship files of the manager host; "
                "upload an archive with source.zip instead",
                "$.source.paths",
            )
        if "order" in source:
            if source.get("task") is not None:
                raise DescriptorError(
                    "give either source.task or its alias source.order, not both", "$.source"
                )
            source["task"] = source.pop("order")
        doc["source"] = source
    deploy = doc.get("deploy")
    if isinstance(deploy, dict) and isinstance(deploy.get("run"), dict):
        run = dict(deploy["run"])
        if "autorestart" in run:
            if "autoRestart" in run:
                raise DescriptorError(
                    "give either run.autoRestart or its alias run.autorestart, not both",
                    "$.deploy.run",
                )
            run["autoRestart"] = run.pop("autorestart")
        doc["deploy"] = {**deploy, "run": run}
    return doc


def parse_descriptor(doc: object) -> TaskDescriptor:
    """Validate a decoded descriptor document and return it as a :class:`TaskDescriptor`.

    Raises :class:`DescriptorError` with the path of the offending field.
    """
    if not isinstance(doc, dict):
        raise DescriptorError("a task descriptor must be a mapping (JSON object)")
    doc = _apply_aliases(doc)
    try:
        desc = msgspec.convert(doc, TaskDescriptor, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH_RE.search(text)
        path = match.group(1) if match else "$"
        message = _PATH_RE.sub("", text)
        raise DescriptorError(message, path) from None
    _check_semantics(desc)
    return desc


def check_relative_path(path: str, where: str) -> None:
    """Refuse absolute paths, ``..`` components and empty names (artifact and archive paths)."""
    if not path or path.startswith("/") or "\x00" in path or "\\" in path:
        raise DescriptorError(f"path must be relative to the source directory: {path!r}", where)
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../") or ".." in path.split("/"):
        raise DescriptorError(f"path must not contain '..': {path!r}", where)


def _check_source(desc: TaskDescriptor) -> None:
    src = desc.source
    if src is None:
        return
    if src.zip is not None and src.task is not None:
        raise DescriptorError("give either source.zip or source.task, not both", "$.source")
    if src.zip is not None:
        try:
            raw = base64.b64decode(src.zip, validate=True)
        except (binascii.Error, ValueError):
            raise DescriptorError("source.zip is not valid base64", "$.source.zip") from None
        if not (
            raw.startswith(b"PK\x03\x04") or raw.startswith(b"PK\x05\x06") or raw[:2] == b"\x1f\x8b"
        ):
            raise DescriptorError("source.zip must be a zip or tar.gz archive", "$.source.zip")
    if src.task is not None and not NAME_RE.match(src.task):
        raise DescriptorError("source.task is not a valid task id", "$.source.task")


def _check_build(desc: TaskDescriptor) -> None:
    build = desc.build
    if build is None:
        return
    if desc.source is not None and desc.source.task is not None:
        raise DescriptorError(
            "source.task reuses the artifacts of an earlier build; omit build", "$.build"
        )
    if desc.source is None or desc.source.zip is None:
        raise DescriptorError("a build needs source files: give source.zip", "$.source")
    if not build.host:
        raise DescriptorError("build.host is required: the id of the build target", "$.build.host")
    if not build.commands:
        raise DescriptorError("build.commands must list at least one command", "$.build.commands")
    if not build.artifacts:
        raise DescriptorError("build.artifacts must list at least one path", "$.build.artifacts")
    check_commands(build.commands, "$.build.commands")
    for i, art in enumerate(build.artifacts):
        check_relative_path(art, f"$.build.artifacts[{i}]")


def _check_deploy(desc: TaskDescriptor) -> None:
    dep = desc.deploy
    if dep is None:
        return
    install = dep.install.commands if dep.install else None
    run = dep.run.commands if dep.run else None
    if not install and not run:
        raise DescriptorError("deploy needs install.commands or run.commands (or both)", "$.deploy")
    check_commands(install, "$.deploy.install.commands")
    check_commands(run, "$.deploy.run.commands")
    _check_requires(dep.requires)
    check_health(dep.health, bool(run))
    _check_target(desc, dep.target or TargetSelector())


def _check_target(desc: TaskDescriptor, target: TargetSelector) -> None:
    lists = (
        ("ids", "id", target.ids),
        ("tags", "tag", target.tags),
        ("all", "tag", target.all),
        ("not", "tag", target.not_),
        ("notIds", "id", target.not_ids),
    )
    for field, what, values in lists:
        if values is not None and len(values) > MAX_SELECTORS:
            raise DescriptorError(
                f"at most {MAX_SELECTORS} entries are allowed", f"$.deploy.target.{field}"
            )
        for i, value in enumerate(values or []):
            check_name(value, what, f"$.deploy.target.{field}[{i}]")
    if not desc.selector.positive:
        raise DescriptorError(
            "deploy.target needs ids, tags or all: which devices should receive the package",
            "$.deploy.target",
        )
    if target.remove and not target.follow:
        raise DescriptorError(
            "deploy.target.remove needs follow: true (it acts on devices that stop matching)",
            "$.deploy.target.remove",
        )
    if target.follow and desc.build is not None:
        raise DescriptorError(
            "a standing task (deploy.target.follow) cannot build; build in a first task "
            "and deploy its artifacts with source.task",
            "$.deploy.target.follow",
        )


def _check_app(desc: TaskDescriptor) -> None:
    if desc.app is not None and not _APP_RE.match(desc.app):
        raise DescriptorError(
            f"invalid app name {desc.app!r}: letters, digits and ._- (at most 64), "
            "starting with a letter or digit",
            "$.app",
        )
    if desc.version is not None and (
        not desc.version.strip()
        or len(desc.version) > 128
        or any(ord(c) < 32 or ord(c) == 127 for c in desc.version)
    ):
        raise DescriptorError(
            "version must be a non-empty label of at most 128 printable characters",
            "$.version",
        )
    if (desc.app is not None or desc.version is not None) and desc.deploy is None:
        field = "$.app" if desc.app is not None else "$.version"
        raise DescriptorError("app and version name what a deploy section delivers", field)


def _check_requires(requires: Requires | None) -> None:
    archs = requires.arch if requires is not None else None
    if archs is None:
        return
    if not archs or len(archs) > MAX_REQUIRED_ARCHS:
        raise DescriptorError(
            f"list 1 to {MAX_REQUIRED_ARCHS} architectures (or leave arch out: any)",
            "$.deploy.requires.arch",
        )
    for i, value in enumerate(archs):
        if not _ARCH_RE.match(value):
            raise DescriptorError(
                f"invalid architecture {value!r}: a name such as x86_64 or aarch64",
                f"$.deploy.requires.arch[{i}]",
            )


def _check_semantics(desc: TaskDescriptor) -> None:
    if desc.build is None and desc.deploy is None:
        raise DescriptorError("a task needs a build or a deploy section (or both)")
    if len(desc.description) > 10_000:
        raise DescriptorError("description must be at most 10000 characters", "$.description")
    if not 60 <= desc.expires_in_s <= MAX_EXPIRES_IN_S:
        raise DescriptorError(
            f"expiresIn must be between 60 and {MAX_EXPIRES_IN_S} seconds", "$.expiresIn"
        )
    _check_app(desc)
    _check_source(desc)
    _check_build(desc)
    _check_deploy(desc)
    _check_sandbox(desc.sandbox)
    check_rollout(desc.rollout, has_deploy=desc.deploy is not None, standing=desc.standing)


def check_absolute_path(path: str, where: str) -> None:
    """Refuse host paths that are not absolute and normalised (sandbox devices and paths):
    no ``..``, ``.``, ``//``, trailing ``/``, NUL, and not ``/`` itself."""
    norm = posixpath.normpath(path) if path else ""
    if not path.startswith("/") or norm != path or path.startswith("//") or "\x00" in path:
        raise DescriptorError(f"must be an absolute, normalised path: {path!r}", where)
    if path == "/" or len(path) > 4096:
        raise DescriptorError(f"must be a path below / of at most 4096 bytes: {path!r}", where)


def _check_sandbox(sandbox: Sandbox | None) -> None:
    if sandbox is None:
        return
    lists = (("devices", sandbox.devices), ("paths", sandbox.paths), ("groups", sandbox.groups))
    for name, values in lists:
        if values is not None and len(values) > MAX_SANDBOX_GRANTS:
            raise DescriptorError(
                f"at most {MAX_SANDBOX_GRANTS} entries are allowed", f"$.sandbox.{name}"
            )
    for i, device in enumerate(sandbox.devices or []):
        check_absolute_path(device, f"$.sandbox.devices[{i}]")
    seen: set[str] = set()
    for i, entry in enumerate(sandbox.paths or []):
        check_absolute_path(entry.path, f"$.sandbox.paths[{i}].path")
        if entry.path in seen:
            raise DescriptorError(f"{entry.path!r} is listed twice", f"$.sandbox.paths[{i}]")
        seen.add(entry.path)
    for i, group in enumerate(sandbox.groups or []):
        if not _GROUP_RE.match(group):
            raise DescriptorError(
                f"invalid group name {group!r}: a letter or _, then letters, digits and _.-",
                f"$.sandbox.groups[{i}]",
            )


def is_valid_name(value: str) -> bool:
    """Whether ``value`` is a valid target id, tag or token-set name."""
    return bool(NAME_RE.match(value))
