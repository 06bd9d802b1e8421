"""SQL implementation of indoor maps: floor plans and positions on them (both dialects)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.common import chunked
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import FloorPlanRecord, IndoorPosition
from swarmdeploy.storage.sql_core import SqlCore
from swarmdeploy.storage.tables import floorplans, indoor_positions, targets

_LISTED = [c for c in floorplans.c if c.name != "image"]


def floorplan_from_row(row: sa.Row[Any]) -> FloorPlanRecord:
    """Rebuild a :class:`FloorPlanRecord` (``image`` empty when the row has none)."""
    m = row._mapping
    return FloorPlanRecord(
        id=m["id"],
        name=m["name"],
        media_type=m["media_type"],
        width=m["width"],
        height=m["height"],
        created_at=m["created_at"],
        image=bytes(m["image"]) if "image" in m else b"",
    )


class SqlIndoor(SqlCore):
    """Floor plans and the targets' positions on them."""

    async def add_floorplan(self, plan: FloorPlanRecord) -> None:
        """Insert it; ``Conflict`` (translated) if the id or name is taken."""
        async with self._write_tx() as conn:
            await conn.execute(sa.insert(floorplans).values(dataclasses.asdict(plan)))

    async def list_floorplans(self) -> list[FloorPlanRecord]:
        """Every plan without its image, by name."""
        query = sa.select(*_LISTED).order_by(floorplans.c.name)
        async with self._tx() as conn:
            return [floorplan_from_row(r) for r in (await conn.execute(query)).all()]

    async def get_floorplan(self, plan_id: str) -> FloorPlanRecord | None:
        """One plan with its image."""
        query = sa.select(floorplans).where(floorplans.c.id == plan_id)
        async with self._tx() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else floorplan_from_row(row)

    async def delete_floorplan(self, plan_id: str) -> None:
        """Delete the plan and its positions; ``NotFound`` if unknown."""
        async with self._write_tx() as conn:
            await conn.execute(
                sa.delete(indoor_positions).where(indoor_positions.c.plan_id == plan_id)
            )
            result = await conn.execute(sa.delete(floorplans).where(floorplans.c.id == plan_id))
        if not result.rowcount:
            raise NotFound(f"floor plan {plan_id!r} not found")

    async def set_indoor_position(self, target_id: str, position: IndoorPosition | None) -> None:
        """Replace the target's position (or remove it with ``None``)."""
        async with self._write_tx() as conn:
            known = sa.select(targets.c.id).where(targets.c.id == target_id)
            if (await conn.execute(known)).first() is None:
                raise NotFound(f"target {target_id!r} not found")
            if position is not None:
                plan = sa.select(floorplans.c.id).where(floorplans.c.id == position.plan_id)
                if (await conn.execute(plan)).first() is None:
                    raise NotFound(f"floor plan {position.plan_id!r} not found")
            await conn.execute(
                sa.delete(indoor_positions).where(indoor_positions.c.target_id == target_id)
            )
            if position is not None:
                await conn.execute(sa.insert(indoor_positions).values(dataclasses.asdict(position)))

    async def indoor_positions(self, target_ids: Sequence[str]) -> dict[str, IndoorPosition]:
        """Positions of those of ``target_ids`` that have one."""
        found: dict[str, IndoorPosition] = {}
        async with self._tx() as conn:
            for part in chunked(sorted(set(target_ids)), self.in_chunk):
                query = sa.select(indoor_positions).where(indoor_positions.c.target_id.in_(part))
                for row in (await conn.execute(query)).all():
                    m = row._mapping
                    found[m["target_id"]] = IndoorPosition(
                        m["target_id"], m["plan_id"], m["x"], m["y"]
                    )
        return found
