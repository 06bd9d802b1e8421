"""Indoor maps.

Part of the :class:`~swarmdeploy.storage.base.Storage` interface (its contract is stated
there); ``sql_indoor.py`` implements it for both SQL backends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swarmdeploy.storage.records import (
    FloorPlanRecord,
    IndoorPosition,
)


class IndoorStore(abc.ABC):
    """Indoor maps (floor plans) and the positions of targets on them."""

    @abc.abstractmethod
    async def add_floorplan(self, plan: FloorPlanRecord) -> None:
        """Store a floor plan; :class:`Conflict` if its id or name is taken."""

    @abc.abstractmethod
    async def list_floorplans(self) -> list[FloorPlanRecord]:
        """Every plan without its image (``image`` empty), by name."""

    @abc.abstractmethod
    async def get_floorplan(self, plan_id: str) -> FloorPlanRecord | None:
        """One plan with its image, or ``None``."""

    @abc.abstractmethod
    async def delete_floorplan(self, plan_id: str) -> None:
        """Delete the plan and every position on it; :class:`NotFound` if unknown."""

    @abc.abstractmethod
    async def set_indoor_position(self, target_id: str, position: IndoorPosition | None) -> None:
        """Place the target on a plan (replacing its earlier place) or, with ``None``, take
        it off; :class:`NotFound` if the target or the plan is unknown."""

    @abc.abstractmethod
    async def indoor_positions(self, target_ids: Sequence[str]) -> dict[str, IndoorPosition]:
        """The positions of those of ``target_ids`` that have one (one query)."""
