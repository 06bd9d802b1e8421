"""``swarmdeploy agent install`` and ``swarmdeploy agent uninstall`` on one device.

Install, in order: write the files of :mod:`.layout` below the root (environment files 0600,
the trust anchor, the unit), create the data dir (0700, root's: the agent runs as root, ADR
0008); then, only when the root is ``/`` (``live``), this process is root and systemd is PID
1, ``systemctl daemon-reload``, ``enable`` and ``restart`` the unit. Whatever it does not do
itself it prints as the exact commands to run. ``--dry-run`` prints every file with its mode
and content and the commands, and changes nothing.

Uninstall reverses it; the data dir (the device's keys and identity) is kept unless
``purge``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from swarmdeploy.agent.provision import files
from swarmdeploy.agent.provision.layout import (
    AGENT_ENV,
    DATA_DIR,
    ETC_DIR,
    TLS_CA,
    TOKEN_ENV,
    TRUST_ANCHOR,
    UNIT_NAME,
    UNIT_PATH,
    WANTS_LINK,
    AgentConfig,
    FileSpec,
    agent_env,
    agent_unit,
    public_files,
    token_env,
)
from swarmdeploy.agent.provision.system import System


@dataclass(frozen=True, slots=True)
class InstallRequest:
    """``agent install``: where, what, and whether only to show it."""

    root: Path
    config: AgentConfig
    token: str | None = None
    target_id: str | None = None
    dry_run: bool = False


def install_files(request: InstallRequest) -> list[FileSpec]:
    """The files one device gets (the token file only when a token is given)."""
    specs = [
        agent_env(request.config),
        *public_files(request.config),
        agent_unit(request.config.exec_command),
    ]
    if request.token:
        specs.append(token_env(request.token, request.target_id))
    return specs


def is_live(root: Path) -> bool:
    """Whether ``root`` is this machine's own root directory."""
    return root.resolve() == Path("/")


def start_commands() -> list[list[str]]:
    """What starts the agent under systemd (restart: a running agent rereads its files)."""
    return [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", UNIT_NAME],
        ["systemctl", "restart", UNIT_NAME],
    ]


def foreground_command(exec_command: str) -> str:
    """One shell line that runs the agent as systemd would, for a system without systemd."""
    env = f"set -a; . {AGENT_ENV}; [ -f {TOKEN_ENV} ] && . {TOKEN_ENV}; set +a"
    return f"sh -c '{env}; exec {exec_command} agent --data-dir {DATA_DIR}'"


def install(
    request: InstallRequest, system: System, out: TextIO, *, live: bool | None = None
) -> int:
    """Run ``agent install`` (see the module doc); return the exit status. ``live`` (default:
    whether the root is ``/``) says whether systemd is this machine's."""
    specs = install_files(request)
    live = is_live(request.root) if live is None else live
    if request.dry_run:
        out.write(files.describe(specs))
        out.write(f"--- {DATA_DIR} (directory, mode 0700)\n")
        out.write("then run:\n")
        for argv in start_commands():
            out.write("  " + " ".join(argv) + "\n")
        out.write("(nothing was written: --dry-run)\n")
        return 0
    for spec in specs:
        out.write(f"wrote {files.write(request.root, spec)} (mode {spec.mode:04o})\n")
    data_dir = files.make_dir(request.root, DATA_DIR, 0o700)
    out.write(f"created {data_dir} (mode 0700)\n")
    if not (live and system.is_root()):
        _tell_offline(request, live, out)
        return 0
    if system.pid1() != "systemd":
        out.write(
            f"systemd is not running here (PID 1 is {system.pid1() or 'unknown'}): once it is,"
            f" run: {' && '.join(' '.join(c) for c in start_commands()[:2])} && systemctl start"
            f" {UNIT_NAME}\nto run the agent now, in the foreground:"
            f" {foreground_command(request.config.exec_command)}\n"
        )
        return 0
    for argv in start_commands():
        system.run(argv)
    out.write(f"started {UNIT_NAME}; follow it with: journalctl -u {UNIT_NAME} -f\n")
    return 0


def _tell_offline(request: InstallRequest, live: bool, out: TextIO) -> None:
    """Print what is left to do when this process may not do it itself."""
    if live:
        out.write("not root: run as root:\n")
        for argv in start_commands():
            out.write("  " + " ".join(argv) + "\n")
        return
    out.write(
        f"{request.root} is not this machine's root; enable the unit there with:"
        f" systemctl --root {request.root} enable {UNIT_NAME}\n"
    )


#: What uninstall removes (the data dir only with --purge).
INSTALLED = (UNIT_PATH, WANTS_LINK, AGENT_ENV, TOKEN_ENV, TRUST_ANCHOR, TLS_CA)


def uninstall(
    root: Path,
    system: System,
    out: TextIO,
    *,
    purge: bool,
    dry_run: bool,
    live: bool | None = None,
) -> int:
    """Run ``agent uninstall``: stop and disable the unit (live), remove the files, and with
    ``purge`` the data dir; return the exit status."""
    live = (is_live(root) if live is None else live) and system.is_root()
    systemd = live and system.pid1() == "systemd"
    commands: list[Sequence[str]] = []
    if systemd:
        commands.append(["systemctl", "disable", "--now", UNIT_NAME])
    if dry_run:
        for argv in commands:
            out.write("would run: " + " ".join(argv) + "\n")
        for path in INSTALLED:
            if files.below(root, path).exists() or files.below(root, path).is_symlink():
                out.write(f"would remove {path}\n")
        kept = "remove" if purge else "keep"
        out.write(f"would {kept} {DATA_DIR}\n(nothing was changed: --dry-run)\n")
        return 0
    for argv in commands:
        system.run(argv)
    for path in INSTALLED:
        if files.remove(root, path):
            out.write(f"removed {path}\n")
    files.remove_empty_dir(root, ETC_DIR)
    if systemd:
        system.run(["systemctl", "daemon-reload"])
    if not purge:
        out.write(f"kept {DATA_DIR} (this device's keys and state; --purge removes it)\n")
        return 0
    if files.remove_tree(root, DATA_DIR):
        out.write(f"removed {DATA_DIR}\n")
    return 0
