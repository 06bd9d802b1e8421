"""Argument parsing of ``swarmdeploy agent install|uninstall|provision``.

The options are validated here once (manager URL, tags, id, token, trust anchor, ``--exec``)
and handed down as :class:`~.layout.AgentConfig` and request objects; every error is one line
on stderr naming the option, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from swarmdeploy.agent.errors import AgentFatalError
from swarmdeploy.agent.provision.image import (
    DeviceToken,
    ProvisionRequest,
    check_token,
    parse_token_file,
    provision,
)
from swarmdeploy.agent.provision.install import InstallRequest, install, uninstall
from swarmdeploy.agent.provision.layout import PACKAGED_EXEC, AgentConfig, LayoutError, check_exec
from swarmdeploy.agent.provision.system import HostSystem, ProvisionError

COMMANDS = ("install", "uninstall", "provision")
EXEC_ENV = "SWARMDEPLOY_AGENT_EXEC"


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The parser of the three commands (``--exec`` defaults from ``SWARMDEPLOY_AGENT_EXEC``)."""
    parser = argparse.ArgumentParser(
        prog="swarmdeploy agent",
        description="Put the swarmdeploy agent on this device (install, uninstall) or into"
        " an image for many devices (provision). docs/operator-guide.md walks through both.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    here = f"{sys.executable} -m swarmdeploy"
    add = commands.add_parser(
        "install",
        help="install the agent as a systemd service on this device",
        description="Write the agent's settings, token, trust anchor and systemd unit, create"
        " its data dir, and start it when systemd runs this machine.",
    )
    _shared(add, environ.get(EXEC_ENV) or here, root_default="/")
    add.add_argument("--token", help="one-time registration token xxxx-xxxx-xxxx")
    add.add_argument("--id", help="target id (default: generated from the host name)")
    remove = commands.add_parser(
        "uninstall",
        help="stop the agent and remove what install wrote",
        description="Stop and disable the agent, remove its unit, settings and trust anchor;"
        " the data dir (this device's identity) is kept unless --purge.",
    )
    remove.add_argument(
        "--root", type=Path, default=Path("/"), metavar="DIR", help="system root (default /)"
    )
    remove.add_argument("--purge", action="store_true", help="remove the data dir too")
    remove.add_argument("--dry-run", action="store_true", help="show what would be removed")
    image = commands.add_parser(
        "provision",
        help="write the agent's settings into a mounted image or a directory tree",
        description="Prepare an image for one device (--token) or for many (--token-file"
        " with one 'TOKEN [ID]' per line and --overlays DIR: one token overlay per device).",
    )
    _shared(image, environ.get(EXEC_ENV) or PACKAGED_EXEC, root_default=None)
    tokens = image.add_mutually_exclusive_group(required=True)
    tokens.add_argument("--token", help="the one device's registration token")
    tokens.add_argument("--token-file", type=Path, metavar="FILE", help="one 'TOKEN [ID]' per line")
    image.add_argument("--id", help="target id of the one device (with --token)")
    image.add_argument(
        "--overlays",
        type=Path,
        metavar="DIR",
        help="directory for the per-device token overlays (outside ROOT)",
    )
    return parser


def _shared(parser: argparse.ArgumentParser, exec_default: str, root_default: str | None) -> None:
    parser.add_argument(
        "--manager", required=True, metavar="URL", help="manager URL, e.g. http://manager:8080"
    )
    parser.add_argument(
        "--trust-anchor",
        type=Path,
        required=True,
        metavar="FILE",
        help="the manager's ca.pem (swarmdeploy keys ca --pem > ca.pem)",
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        metavar="FILE",
        help="PEM certificate(s) of an https:// manager's API, the only ones trusted (docs/tls.md)",
    )
    parser.add_argument(
        "--tags", default="", metavar="A,B", help="comma-separated tags sent at registration"
    )
    if root_default is None:
        parser.add_argument(
            "--root",
            type=Path,
            required=True,
            metavar="DIR",
            help="the mounted image or directory tree",
        )
    else:
        parser.add_argument(
            "--root",
            type=Path,
            default=Path(root_default),
            metavar="DIR",
            help="system root (default /)",
        )
    parser.add_argument(
        "--exec",
        dest="exec_command",
        metavar="COMMAND",
        default=exec_default,
        help=f"the swarmdeploy program the unit runs (default: {exec_default}) [{EXEC_ENV}]",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show every file with its mode and content"
    )


def agent_config(args: argparse.Namespace) -> AgentConfig:
    """Validate the shared options into an :class:`AgentConfig`."""
    from swarmdeploy.agent.config import manager_host, parse_tags
    from swarmdeploy.agent.trust import load_anchor_file
    from swarmdeploy.protocol.messages import valid_name

    manager_host(args.manager)
    tags = parse_tags(args.tags)
    for tag in tags:
        if not valid_name(tag):
            raise ProvisionError(f"--tags: {tag!r} is not a valid tag")
    if args.id is not None and not valid_name(args.id):
        raise ProvisionError(f"--id {args.id!r} is not a valid target id")
    load_anchor_file(args.trust_anchor)  # ConfigError names the file and the problem
    try:
        exec_command = check_exec(args.exec_command)
    except LayoutError as exc:
        raise ProvisionError(str(exc)) from None
    return AgentConfig(
        args.manager, args.trust_anchor.read_bytes(), tags, exec_command, _tls_ca(args.tls_ca)
    )


def _tls_ca(path: Path | None) -> bytes | None:
    """The ``--tls-ca`` file's bytes; ProvisionError unless it holds a PEM certificate."""
    if path is None:
        return None
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"--tls-ca {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ProvisionError(f"--tls-ca {path} holds no PEM certificate")
    return pem


def _provision_request(args: argparse.Namespace) -> ProvisionRequest:
    config = agent_config(args)
    token = None
    devices: tuple[DeviceToken, ...] = ()
    if args.token is not None:
        token = DeviceToken(check_token(args.token, "--token"), args.id)
    else:
        if args.id is not None:
            raise ProvisionError("--id goes with --token; put ids in the token file instead")
        try:
            text = args.token_file.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError(f"--token-file {args.token_file}: {exc}") from None
        devices = parse_token_file(text, str(args.token_file))
    return ProvisionRequest(args.root, config, token, devices, args.overlays, dry_run=args.dry_run)


def run(args: argparse.Namespace) -> int:
    """Carry out the parsed command."""
    system = HostSystem()
    if args.command == "uninstall":
        return uninstall(args.root, system, sys.stdout, purge=args.purge, dry_run=args.dry_run)
    if args.command == "provision":
        return provision(_provision_request(args), sys.stdout)
    config = agent_config(args)
    token = check_token(args.token, "--token") if args.token is not None else None
    request = InstallRequest(args.root, config, token, args.id, dry_run=args.dry_run)
    return install(request, system, sys.stdout)


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """``swarmdeploy agent install|uninstall|provision ...``; returns the exit status."""
    args = build_parser(os.environ if environ is None else environ).parse_args(list(argv))
    try:
        return run(args)
    except (AgentFatalError, LayoutError) as exc:
        print(f"swarmdeploy agent {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"swarmdeploy agent {args.command}: {exc}", file=sys.stderr)
        return 2
