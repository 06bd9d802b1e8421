"""Indoor maps: floor-plan images and where devices are on them.

Images are checked by their bytes, not their declared type: PNG or baseline/progressive JPEG
only (no SVG: it can carry scripts), at most :data:`MAX_IMAGE_BYTES`, and the size in pixels
is read from the image's own header (PNG ``IHDR``, JPEG ``SOFn``)."""

from __future__ import annotations

import secrets
import struct

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import InvalidInput, NotFoundError
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.records import FloorPlanRecord, IndoorPosition

MAX_IMAGE_BYTES = 8 << 20
MAX_SIDE_PX = 20_000
_PNG = b"\x89PNG\r\n\x1a\n"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes) -> tuple[str, int, int]:
    """``(media type, width, height)`` of a PNG or JPEG image; :class:`ValueError` naming
    what is wrong otherwise."""
    if data.startswith(_PNG) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data.startswith(b"\xff\xd8"):
        return ("image/jpeg", *_jpeg_size(data))
    raise ValueError("the image must be a PNG or a JPEG")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("the JPEG is damaged (no marker where one must be)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _SOF and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise ValueError("the JPEG has no frame header with its size")


class FloorPlans:
    """Floor plans and indoor positions, over :class:`Storage`."""

    def __init__(self, storage: Storage, *, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock

    async def add(self, name: str, data: bytes) -> FloorPlanRecord:
        """Store a plan named ``name`` from image bytes; :class:`InvalidInput` for a bad
        image or a name in use."""
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidInput(f"the image is larger than {MAX_IMAGE_BYTES} bytes", path="body")
        try:
            media_type, width, height = image_size(data)
        except ValueError as exc:
            raise InvalidInput(str(exc), path="body") from None
        if not (0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX):
            raise InvalidInput(f"the image must be 1..{MAX_SIDE_PX} pixels a side", path="body")
        plan = FloorPlanRecord(
            id=secrets.token_hex(8), name=name, media_type=media_type, width=width,
            height=height, created_at=self._clock(), image=data,
        )  # fmt: skip
        try:
            await self._storage.add_floorplan(plan)
        except Conflict:
            raise InvalidInput(f"a floor plan named {name!r} exists", path="name") from None
        return plan

    async def list(self) -> list[FloorPlanRecord]:
        """Every plan (without images)."""
        return await self._storage.list_floorplans()

    async def get(self, plan_id: str) -> FloorPlanRecord:
        """One plan with its image; :class:`NotFoundError` if unknown."""
        plan = await self._storage.get_floorplan(plan_id)
        if plan is None:
            raise NotFoundError(f"floor plan {plan_id} is not found")
        return plan

    async def delete(self, plan_id: str) -> None:
        """Delete a plan; the devices on it lose their indoor position."""
        try:
            await self._storage.delete_floorplan(plan_id)
        except NotFound:
            raise NotFoundError(f"floor plan {plan_id} is not found") from None

    async def place(self, target_id: str, plan_id: str | None, x: float, y: float) -> None:
        """Put the target at (x, y) pixels of the plan, or take it off (``plan_id`` None);
        :class:`InvalidInput` at ``$.indoor`` for an unknown plan or a point outside it."""
        if plan_id is None:
            position = None
        else:
            plan = await self._storage.get_floorplan(plan_id)
            if plan is None:
                raise InvalidInput(f"floor plan {plan_id} is not found", path="$.indoor.plan")
            if not (0 <= x <= plan.width and 0 <= y <= plan.height):
                raise InvalidInput(
                    f"({x}, {y}) is outside the plan ({plan.width} x {plan.height} px)",
                    path="$.indoor",
                )
            position = IndoorPosition(target_id, plan_id, x, y)
        try:
            await self._storage.set_indoor_position(target_id, position)
        except NotFound:
            raise NotFoundError(f"target {target_id} is not found") from None
