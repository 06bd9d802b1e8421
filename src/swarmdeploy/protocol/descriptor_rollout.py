"""``rollout`` of the task descriptor: a staged rollout, group by group (docs/rollouts.md)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from swarmdeploy.protocol.descriptor_common import MAX_SELECTORS, NAME_RE, Strict
from swarmdeploy.protocol.errors import DescriptorError
from swarmdeploy.protocol.selector import check_name

#: Most groups one rollout may have.
MAX_ROLLOUT_GROUPS = 100
#: Longest soak time of one rollout group (seconds).
MAX_SOAK_S = 7 * 24 * 3600
_Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class RolloutGroup(Strict):
    """One group of a staged rollout (docs/rollouts.md), chosen among the matched targets
    not in an earlier group by ``count``, ``percent`` (of all matched targets, rounded up),
    ``tags`` (any of) or ``ids`` -- exactly one of them; a group choosing none takes the
    rest and must be the last. The next group starts once ``successThreshold`` percent of
    this one are ``running``/``exited``/``healthy`` and still are after ``soak`` seconds;
    the rollout halts once more than ``errorThreshold`` percent failed, were declined or
    rolled back."""

    name: str | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_SELECTORS)] | None = None
    percent: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None
    tags: list[str] | None = None
    ids: list[str] | None = None
    success_threshold: _Percent = 100.0
    error_threshold: _Percent = 0.0
    soak: Annotated[int, msgspec.Meta(ge=0, le=MAX_SOAK_S)] = 0

    @property
    def choosers(self) -> list[str]:
        """The fields choosing the group's members (valid groups: one, or none for the rest)."""
        values = (
            ("count", self.count),
            ("percent", self.percent),
            ("tags", self.tags),
            ("ids", self.ids),
        )
        return [name for name, value in values if value is not None]


class Rollout(Strict):
    """A staged rollout: the deploy targets are announced group by group, in order."""

    groups: list[RolloutGroup]


def check_rollout(rollout: Rollout | None, *, has_deploy: bool, standing: bool) -> None:
    """Check a task's ``rollout`` (``has_deploy``: the task has a deploy section; ``standing``:
    it follows devices that match later). Raises :class:`DescriptorError` naming the field."""
    if rollout is None:
        return
    if not has_deploy:
        raise DescriptorError("a rollout orders the targets of a deploy section", "$.rollout")
    if standing:
        raise DescriptorError(
            "a standing task (deploy.target.follow) cannot have a rollout: devices that "
            "match later would belong to no group",
            "$.rollout",
        )
    if not 1 <= len(rollout.groups) <= MAX_ROLLOUT_GROUPS:
        raise DescriptorError(f"list 1 to {MAX_ROLLOUT_GROUPS} groups", "$.rollout.groups")
    last = len(rollout.groups) - 1
    for i, group in enumerate(rollout.groups):
        _check_rollout_group(group, f"$.rollout.groups[{i}]", last=i == last)


def _check_rollout_group(group: RolloutGroup, path: str, *, last: bool) -> None:
    choosers = group.choosers
    if len(choosers) > 1:
        raise DescriptorError(
            "a group is chosen by one of count, percent, tags or ids, not "
            + " and ".join(choosers),
            path,
        )
    if not choosers and not last:
        raise DescriptorError(
            "only the last group may take the rest: give count, percent, tags or ids", path
        )
    if group.name is not None and not NAME_RE.match(group.name):
        raise DescriptorError(f"invalid group name {group.name!r}", f"{path}.name")
    for field, what, values in (("tags", "tag", group.tags), ("ids", "id", group.ids)):
        if values is None:
            continue
        if not values or len(values) > MAX_SELECTORS:
            raise DescriptorError(f"list 1 to {MAX_SELECTORS} entries", f"{path}.{field}")
        for j, value in enumerate(values):
            check_name(value, what, f"{path}.{field}[{j}]")
