"""The one target filter of the API: ``GET /targets`` and the selection of
``POST /targets/bulk`` both call :func:`select_targets`, so a bulk change touches exactly
the targets the list shows for the same parameters (``docs/cli.md`` "Tags")."""

from __future__ import annotations

from swarmdeploy.manager.errors import InvalidInput
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.services.registry import TargetView
from swarmdeploy.protocol.errors import DescriptorError
from swarmdeploy.protocol.selector import parse_selector
from swarmdeploy.storage.records import Page


def parse_tags(tags: str | None) -> list[str]:
    """The ``tags`` parameter (comma-separated) as a list; empty entries are dropped."""
    return [t.strip() for t in (tags or "").split(",") if t.strip()]


async def select_targets(
    services: Services,
    *,
    tags: str | None,
    search: str | None,
    page: int,
    per_page: int,
    select: str | None = None,
) -> Page[TargetView]:
    """One page of the targets matching ``tags`` (a target needs all), ``search`` (a
    substring of id or name) and ``select`` (a selector, ``docs/selectors.md``), sorted by
    id. A selector that does not parse is an :class:`InvalidInput` naming ``select``."""
    try:
        selector = parse_selector(select or "", "select")
    except DescriptorError as exc:
        raise InvalidInput(exc.message, path="select") from None
    return await services.registry.list(
        tags=parse_tags(tags),
        search=search or None,
        page=page,
        per_page=per_page,
        selector=selector,
    )
