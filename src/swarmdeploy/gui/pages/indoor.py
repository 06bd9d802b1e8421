"""Floor-plan images for the map page: an ``<img>`` (Leaflet's image overlay) cannot send the
operator's bearer key, so the GUI serves ``/ui/floorplan-image/{id}`` to a signed-in browser
session by fetching ``GET /floorplans/{id}/image`` through the public API with that session's
key (a viewer's key suffices; without a session: 401)."""

from __future__ import annotations

from fastapi import Request, Response
from nicegui import app

from swarmdeploy.client import ApiError
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.pages.layout import FLOORPLAN_IMAGE


def register(ctx: GuiContext) -> None:
    """Declare the image route."""

    @app.get(FLOORPLAN_IMAGE + "/{plan_id}", include_in_schema=False)
    async def floorplan_image(plan_id: str, request: Request) -> Response:
        session = ctx.sessions.get(request.session.get("id"))
        if session is None:
            return Response("sign in first", status_code=401, media_type="text/plain")
        try:
            async with ctx.client(session.api_key) as api:
                image = await api.raw("GET", f"/floorplans/{plan_id}/image")
        except ApiError as exc:
            return Response(exc.message, status_code=exc.status or 502, media_type="text/plain")
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(image.content, media_type=image.media_type, headers=headers)
