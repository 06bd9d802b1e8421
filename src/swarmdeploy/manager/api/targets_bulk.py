"""``POST /targets/bulk``: change tags and/or location of many targets at once.

The selection is either explicit ``ids`` or the filter of ``GET /targets`` (``tags``,
``search``; :func:`select_targets`, the same code). The matching ids are collected first
(every page), then each target is changed through the registry like ``PUT /targets/{id}``
(so the agent is told and ``targetUpdated`` is published); a target whose tags and location
would not change is left alone. ``location`` sets the location, ``clearLocation: true`` clears
it (not both). One audit entry records the selection, the changes and the
ids changed. Tag changes: ``setTags`` replaces, else ``removeTags`` then ``addTags`` (kept in
order, no duplicates).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, model_validator

from swarmdeploy.manager.api.models import ApiModel, LocationModel, Name
from swarmdeploy.manager.api.target_filter import select_targets
from swarmdeploy.manager.errors import BadRequest, NotFoundError
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.container import Services
from swarmdeploy.storage.records import TargetRecord

#: Most targets one request may change (a larger fleet: several requests by tag).
MAX_BULK = 10_000
_PAGE = 1000


class TargetSelection(ApiModel):
    """Which targets: ``ids``, or ``tags``/``search``/``select`` exactly as ``GET /targets``
    takes them."""

    ids: list[Name] | None = Field(None, min_length=1, max_length=MAX_BULK)
    tags: str | None = Field(None, max_length=4096, description="Comma-separated; all needed.")
    search: str | None = Field(None, min_length=1, max_length=128)
    select: str | None = Field(
        None, min_length=1, max_length=65536, description="A selector (docs/selectors.md)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> TargetSelection:
        if self.ids is not None and (self.tags or self.search or self.select):
            raise ValueError("select by ids or by tags/search/select, not both")
        if (
            self.ids is None
            and not (self.tags and self.tags.strip(",").strip())
            and not (self.search)
            and not (self.select and self.select.strip())
        ):
            raise ValueError("an empty selection would select every target: give ids, tags, "
                             "search or select")  # fmt: skip
        return self


class TargetsBulkUpdate(ApiModel):
    """A selection and the changes to make."""

    selection: TargetSelection
    add_tags: list[Name] = Field(default_factory=list, max_length=100)
    remove_tags: list[Name] = Field(default_factory=list, max_length=100)
    set_tags: list[Name] | None = Field(None, max_length=100)
    location: LocationModel | None = None
    clear_location: StrictBool = Field(False, description="Clear the location of every target.")

    @model_validator(mode="after")
    def _some_change(self) -> TargetsBulkUpdate:
        if self.set_tags is not None and (self.add_tags or self.remove_tags):
            raise ValueError("setTags replaces the tags: no addTags/removeTags with it")
        if self.clear_location and self.location is not None:
            raise ValueError("location sets the location and clearLocation clears it: not both")
        if self.set_tags is None and not (
            self.add_tags or self.remove_tags or self.location or self.clear_location
        ):
            raise ValueError(
                "no change given: addTags, removeTags, setTags, location or clearLocation"
            )
        return self


class TargetsBulkResult(ApiModel):
    """What happened: targets selected, changed (their ids) and ids not found."""

    matched: int
    changed: int
    ids: list[str]
    missing: list[str]


def new_tags(current: tuple[str, ...], body: TargetsBulkUpdate) -> list[str]:
    """The tags after the change (see the module docstring)."""
    if body.set_tags is not None:
        return list(dict.fromkeys(body.set_tags))
    removed = set(body.remove_tags)
    kept = [t for t in current if t not in removed]
    return list(dict.fromkeys([*kept, *body.add_tags]))


async def _selected(
    services: Services, sel: TargetSelection
) -> tuple[list[TargetRecord], list[str]]:
    if sel.ids is not None:
        found, missing = [], []
        for target_id in dict.fromkeys(sel.ids):
            try:
                found.append(await services.registry.get(target_id))
            except NotFoundError:
                missing.append(target_id)
        return found, missing
    records: list[TargetRecord] = []
    page = 1
    while True:
        result = await select_targets(
            services,
            tags=sel.tags,
            search=sel.search,
            select=sel.select,
            page=page,
            per_page=_PAGE,
        )
        records += [view.record for view in result.items]
        if len(records) > MAX_BULK:
            raise BadRequest(f"the selection has more than {MAX_BULK} targets; narrow it")
        if page * _PAGE >= result.total:
            return records, []
        page += 1


def _changes(record: TargetRecord, body: TargetsBulkUpdate) -> dict[str, Any]:
    """What ``body`` changes of ``record``, as a ``PUT /targets/{id}`` body (empty: nothing)."""
    changes: dict[str, Any] = {}
    tags = new_tags(record.tags, body)
    if tags != list(record.tags):
        changes["tags"] = tags
    if body.location is not None:
        loc = body.location
        if record.location is None or (record.location.lat, record.location.lon) != (
            loc.lat,
            loc.lon,
        ):
            changes["location"] = {"lat": loc.lat, "lon": loc.lon}
    elif body.clear_location and record.location is not None:
        changes["location"] = None
    return changes


async def bulk_update(
    services: Services, who: Principal, body: TargetsBulkUpdate
) -> dict[str, Any]:
    """Apply ``body``; returns the :class:`TargetsBulkResult` document."""
    records, missing = await _selected(services, body.selection)
    changed: list[str] = []
    for record in records:
        changes = _changes(record, body)
        if changes:
            await services.registry.update(record.id, changes)
            changed.append(record.id)
    plain = {"selection"} if body.clear_location else {"selection", "clear_location"}
    details = {
        "selection": body.selection.model_dump(exclude_none=True, by_alias=True),
        "changes": body.model_dump(exclude=plain, exclude_none=True, by_alias=True),
        "matched": len(records),
        "changed": changed[:100],
        "changedCount": len(changed),
    }
    await services.audit.append(who, "target.bulk_update", "", details)
    return {"matched": len(records), "changed": len(changed), "ids": changed, "missing": missing}
