"""The GUI's pages; :func:`register` declares them once per process (NiceGUI routes are
process-wide)."""

from __future__ import annotations

from swarmdeploy.gui.context import GuiContext


def register(ctx: GuiContext) -> None:
    """Declare every page with ``ctx`` bound."""
    from swarmdeploy.gui.pages import (
        deployments,
        device,
        devices,
        keys,
        logs,
        mapview,
        signin,
        tokens,
    )

    signin.register(ctx)
    devices.register(ctx)
    tokens.register(ctx)
    deployments.register(ctx)
    mapview.register(ctx)
    device.register(ctx)
    logs.register(ctx)
    keys.register(ctx)
