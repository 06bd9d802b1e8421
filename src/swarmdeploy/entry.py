"""The ``swarmdeploy`` console script: dispatches to the manager, the agent or the operator CLI.

Dispatch happens before any heavy import so that ``swarmdeploy agent`` on a device loads
neither the server stack nor the operator CLI.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

#: The extra that installs what each command needs (``pip install 'swarmdeploy[EXTRA]'``).
EXTRAS = {"manager": "manager", "agent": "agent", "simulate": "agent,cli"}


def main(argv: list[str] | None = None) -> int:
    """Run ``swarmdeploy manager|agent|<cli command>`` and return the exit status. A
    command whose extra is not installed prints one line naming it (status 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    try:
        if command == "manager":
            from swarmdeploy.manager.main import main as manager_main

            return manager_main(args[1:], mount_gui=_mount_gui)
        if command == "agent":
            agent = importlib.import_module("swarmdeploy.agent.main")
            status: int = agent.main(args[1:])
            return status
        if command == "simulate":  # the load-testing simulator: agent side plus httpx
            simulate = importlib.import_module("swarmdeploy.simulate.main")
            sim_status: int = simulate.main(args[1:])
            return sim_status
        from swarmdeploy.cli.app import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "swarmdeploy").partition(".")[0] == "swarmdeploy":
            raise
        return _missing_extra(command, exc.name or "?")
    return cli_main(args)


#: A module each server command cannot run without (to tell what this install can do).
NEEDS = {"manager": "fastapi", "agent": "zmq"}
HELP = ("", "-h", "--help")


def _installed(command: str) -> bool:
    return importlib.util.find_spec(NEEDS[command]) is not None


def _missing_extra(command: str, module: str) -> int:
    if command in HELP:  # e.g. a device with the agent extra only: say what it can do
        present = [c for c in NEEDS if _installed(c)]
        if present:
            print(f"usage: swarmdeploy {{{','.join(present)}}} [OPTIONS]  "
                  f"(swarmdeploy {present[0]} --help lists the options)")  # fmt: skip
        print(
            "the operator CLI (tokens, targets, tasks, logs, keys, ...) needs the 'cli' extra"
            f" (module {module} is missing): pip install 'swarmdeploy[cli]'"
        )
        return 0 if command else 2
    extra = EXTRAS.get(command, "cli")
    what = f"swarmdeploy {command}" if extra != "cli" else "the swarmdeploy operator CLI"
    extras = "extras" if "," in extra else "extra"
    print(
        f"{what} needs the '{extra}' {extras} (module {module} is missing): "
        f"pip install 'swarmdeploy[{extra}]'",
        file=sys.stderr,
    )
    return 2


def _mount_gui(app: Any, settings: Any) -> None:
    """Mount the web GUI (``swarmdeploy.gui``) into the manager ``app``; imported only when
    the GUI is on, so ``--no-gui`` costs nothing."""
    from swarmdeploy.gui import GuiOptions, SsoOptions, mount

    mount(
        app,
        GuiOptions(
            data_dir=settings.data_dir,
            map_tiles=settings.map_tiles,
            map_attribution=settings.map_attribution,
            sso=SsoOptions(
                client_id=settings.oidc_client_id,
                authorize_url=settings.oidc_authorize_url,
                token_url=settings.oidc_token_url,
            )
            if settings.oidc_client_id
            else None,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
