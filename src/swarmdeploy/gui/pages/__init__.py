"""The GUI's pages; :func:`register` declares them once per process (NiceGUI routes are
process-wide)."""

from __future__ import annotations

from swarmdeploy.gui.context import GuiContext


def register(ctx: GuiContext) -> None:
    """Declare every page with ``ctx`` bound."""
    from swarmdeploy.gui.pages import (
        apps,
        compose,
        deployments,
        device,
        devices,
        indoor,
        keys,
        logs,
        mapview,
        signin,
        sso,
        terminal,
        tokens,
    )

    signin.register(ctx)
    compose.register(ctx)  # before deployments: /deployments/new is not a task id
    devices.register(ctx)
    tokens.register(ctx)
    deployments.register(ctx)
    mapview.register(ctx)
    device.register(ctx)
    logs.register(ctx)
    keys.register(ctx)
    apps.register(ctx)
    terminal.register(ctx)
    indoor.register(ctx)
    sso.register(ctx)
