"""What the device's owner lets deployed commands use, and the check of a task's sandbox
policy against it (issue 9 items 9 and 14, ADR 0007, ``docs/security.md``).

The owner's options (``--allow-device``, ``--allow-path DIR[:rw]``, ``--allow-group``,
``--max-*``) become one :class:`SandboxGrants` at agent start (:func:`sandbox_grants`); the
signed manifest's :class:`~swarmdeploy.protocol.manifest.SandboxPolicy` can only ask.
:func:`policy_refusals` lists everything asked beyond the grants -- the processor refuses
such a task right after verification, naming each item, and the launcher checks again before
every start. Nothing the manager sends changes the grants.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from swarmdeploy.agent.errors import ConfigError, LaunchError
from swarmdeploy.agent.limits import LimitCeilings, limit_refusals
from swarmdeploy.protocol.manifest import NOBODY, SandboxPolicy

if TYPE_CHECKING:
    from swarmdeploy.agent.config import AgentSettings

__all__ = [
    "SandboxGrants",
    "clean_path",
    "policy_refusals",
    "sandbox_grants",
    "supplementary_gids",
    "under",
]


@dataclass(frozen=True, slots=True)
class SandboxGrants:
    """What the device's owner allows tasks to ask for (``--allow-device``, ``--allow-path
    DIR[:rw]``, ``--allow-group``) and the limit ceilings (``--max-*``): the agent's own
    config, never the manager's. A path grant covers the path and everything below it;
    groups are (name, gid) resolved on this device. Tasks run as ``uid``/``gid`` (65534); a
    manifest naming another user is refused."""

    devices: tuple[str, ...] = ()
    ro_prefixes: tuple[Path, ...] = ()
    rw_prefixes: tuple[Path, ...] = ()
    groups: tuple[tuple[str, int], ...] = ()
    ceilings: LimitCeilings = field(default_factory=LimitCeilings)
    uid: int = NOBODY
    gid: int = NOBODY


def sandbox_grants(settings: AgentSettings) -> SandboxGrants:
    """The owner's grants and ceilings from the agent's settings, group names resolved to
    this device's gids (:class:`ConfigError` for an unknown group)."""
    import grp

    groups = []
    for name in settings.allow_groups:
        try:
            groups.append((name, grp.getgrnam(name).gr_gid))
        except KeyError:
            raise ConfigError(f"--allow-group {name!r}: no such group on this device") from None
        if groups[-1][1] == 0:
            raise ConfigError(f"--allow-group {name!r} is gid 0 (root's group)")
    return SandboxGrants(
        devices=settings.allow_devices,
        ro_prefixes=tuple(Path(p) for p, rw in settings.allow_paths if not rw),
        rw_prefixes=tuple(Path(p) for p, rw in settings.allow_paths if rw),
        groups=tuple(groups),
        ceilings=settings.ceilings,
    )


def clean_path(text: str, what: str) -> PurePosixPath:
    path = PurePosixPath(text)
    if not path.is_absolute() or ".." in path.parts or str(path) != text or text == "/":
        raise LaunchError(f"sandbox {what} {text!r} must be an absolute, normalised path below /")
    return path


def under(path: PurePosixPath, prefixes: Iterable[Path]) -> bool:
    return any(path == PurePosixPath(p) or PurePosixPath(p) in path.parents for p in prefixes)


def _overlaps(path: PurePosixPath, hidden: Iterable[Path]) -> bool:
    """Whether ``path`` is a hidden dir, below one, or above one (a bind would show it)."""
    return any(under(path, [h]) or path in PurePosixPath(h).parents for h in hidden)


def _path_refusals(
    policy: SandboxPolicy, grants: SandboxGrants, hidden: Iterable[Path]
) -> list[str]:
    refused = []
    readable = (*grants.ro_prefixes, *grants.rw_prefixes)
    for what, texts, allowed in (
        ("path {} (rw)", policy.rw_paths, grants.rw_prefixes),
        ("path {}", policy.ro_paths, readable),
    ):
        for text in texts:
            try:
                granted = under(clean_path(text, "path"), allowed)
            except LaunchError as exc:
                refused.append(str(exc))
                continue
            if not granted:
                refused.append(what.format(text))
            elif _overlaps(PurePosixPath(text), hidden):
                refused.append(what.format(text) + " (overlaps the agent's data dir)")
            elif not os.path.exists(text):
                refused.append(what.format(text) + " (does not exist on this device)")
    return refused


def policy_refusals(
    policy: SandboxPolicy, grants: SandboxGrants, hidden: Iterable[Path] = ()
) -> list[str]:
    """Everything ``policy`` asks for that the agent's :class:`SandboxGrants` do not allow,
    one entry each naming it: devices not listed, paths not below a granted one (writable
    ones below a ``:rw`` grant) or missing here, groups (by name or gid) not granted, limits
    above the ceilings, root (uid, gid or a group 0) or another user than the grants'
    uid/gid, and paths overlapping a ``hidden`` dir (the agent's data dir). Empty: the
    policy is granted."""
    refused = []
    if 0 in (policy.uid, policy.gid, *policy.groups):
        refused.append("uid/gid 0 (sandboxed commands never run as root)")
    elif (policy.uid, policy.gid) != (grants.uid, grants.gid):
        refused.append(
            f"uid {policy.uid} gid {policy.gid} (this device runs tasks as uid {grants.uid}"
            f" gid {grants.gid})"
        )
    refused += _path_refusals(policy, grants, hidden)
    for text in policy.devices:
        if text not in grants.devices:
            refused.append(f"device {text}")
        elif not _is_device(text):
            refused.append(f"device {text} (not a device node on this device)")
    names = {name for name, _ in grants.groups}
    refused += [f"group {name}" for name in policy.group_names if name not in names]
    gids = {gid for _, gid in grants.groups}
    refused += [f"gid {gid}" for gid in policy.groups if gid and gid not in gids]
    return refused + limit_refusals(policy.rlimits, grants.ceilings)


def _is_device(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def supplementary_gids(policy: SandboxPolicy, grants: SandboxGrants) -> tuple[int, ...]:
    """The supplementary groups of the commands: the policy's gids and its group names
    resolved through the grants (both checked by :func:`policy_refusals`)."""
    named = dict(grants.groups)
    resolved = (named[name] for name in policy.group_names if name in named)
    return tuple(dict.fromkeys((*policy.groups, *resolved)))
