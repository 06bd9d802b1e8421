"""Indoor maps of the in-memory storage (no awaits: each call is atomic with respect to
other tasks of the event loop, like one SQL transaction)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import FloorPlanRecord, IndoorPosition


class MemoryIndoor:
    """The indoor-map methods of ``MemoryStorage`` (a mixin); a deleted target's position
    goes with it (``forget_position``), as the SQL foreign key does."""

    _state: StorageState
    _targets: dict[str, Any]
    _floorplans: dict[str, FloorPlanRecord]
    _positions: dict[str, IndoorPosition]

    async def add_floorplan(self, plan: FloorPlanRecord) -> None:
        """Store it; ``Conflict`` if the id or name is taken."""
        require_open(self._state)
        if plan.id in self._floorplans or any(
            p.name == plan.name for p in self._floorplans.values()
        ):
            raise Conflict(f"floor plan {plan.id!r} or name {plan.name!r} exists")
        self._floorplans[plan.id] = plan

    async def list_floorplans(self) -> list[FloorPlanRecord]:
        """Every plan without its image, by name."""
        require_open(self._state)
        plans = sorted(self._floorplans.values(), key=lambda p: p.name)
        return [dataclasses.replace(p, image=b"") for p in plans]

    async def get_floorplan(self, plan_id: str) -> FloorPlanRecord | None:
        """One plan with its image."""
        require_open(self._state)
        return self._floorplans.get(plan_id)

    async def delete_floorplan(self, plan_id: str) -> None:
        """Delete the plan and its positions; ``NotFound`` if unknown."""
        require_open(self._state)
        if self._floorplans.pop(plan_id, None) is None:
            raise NotFound(f"floor plan {plan_id!r} not found")
        for target_id in [t for t, p in self._positions.items() if p.plan_id == plan_id]:
            del self._positions[target_id]

    async def set_indoor_position(self, target_id: str, position: IndoorPosition | None) -> None:
        """Replace the target's position (or remove it with ``None``)."""
        require_open(self._state)
        if target_id not in self._targets:
            raise NotFound(f"target {target_id!r} not found")
        if position is None:
            self._positions.pop(target_id, None)
            return
        if position.plan_id not in self._floorplans:
            raise NotFound(f"floor plan {position.plan_id!r} not found")
        self._positions[target_id] = position

    async def indoor_positions(self, target_ids: Sequence[str]) -> dict[str, IndoorPosition]:
        """Positions of those of ``target_ids`` that have one."""
        require_open(self._state)
        return {t: self._positions[t] for t in target_ids if t in self._positions}

    def forget_position(self, target_id: str) -> None:
        """Drop a deleted target's position."""
        self._positions.pop(target_id, None)
