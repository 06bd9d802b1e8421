"""``swarmdeploy agent``: the Deployment Agent's entry point.

``swarmdeploy agent --data-dir DIR --manager URL [--token XXXX-XXXX-XXXX] [--id ID]
[--tags a,b] [--location LAT,LON] [--transport zmq|http] [--proxy socks5h://...]
[--trust-anchor FILE] [--insecure-lab] [--tls-ca FILE] [--terminal off|sandboxed|root]
[--on-revoked keep|stop]`` plus tuning options (``--help``).
Without ``--trust-anchor`` the agent declines every task unless ``--insecure-lab`` is given
(``docs/security.md``); ``--tls-ca`` pins the certificate or CA of an ``https://`` manager
(``docs/tls.md``). ``--allow-device``, ``--allow-path DIR[:rw]``, ``--allow-group``
(repeatable) and the ``--max-*`` ceilings are the device owner's sandbox policy: what a
task's signed ``sandbox`` section may ask for (``docs/security.md``, ADR 0007). Every
option also comes from
``SWARMDEPLOY_AGENT_<OPTION>`` (``--data-dir`` -> ``SWARMDEPLOY_AGENT_DATA_DIR``); the
command line wins. The settings are validated once here and passed down.
``swarmdeploy agent install|uninstall|provision`` are dispatched to
:mod:`swarmdeploy.agent.provision` before the daemon's parser.

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT); 2 when an operator must change
something (options, token, id, data dir, state); 3 when the manager is unreachable or keeps
refusing for now (a supervisor may retry later). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmdeploy.agent.errors import AgentFatalError, ConfigError, RegistrationError
from swarmdeploy.logformat import configure as configure_logging

if TYPE_CHECKING:  # imported where used: main() decides first what may be imported at all
    from swarmdeploy.agent.config import AgentSettings
    from swarmdeploy.agent.daemon import Daemon
    from swarmdeploy.agent.identity import Identity
    from swarmdeploy.agent.state import AgentState
    from swarmdeploy.transport.base import AgentTransport

logger = logging.getLogger("swarmdeploy.agent")
#: ``swarmdeploy agent install|uninstall|provision`` (:mod:`swarmdeploy.agent.provision`).
PROVISION_COMMANDS = ("install", "uninstall", "provision")
ENV_PREFIX = "SWARMDEPLOY_AGENT_"

# (option, type, help); the destination is the option name with '-' -> '_'.
_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    ("--data-dir", Path, "directory for keys, state, log spool and tasks (required)"),
    ("--manager", str, "manager URL, e.g. http://manager:8080 (required to register)"),
    ("--token", str, "registration token xxxx-xxxx-xxxx (first start only)"),
    ("--id", str, "target id (default: generated from the host name on first start)"),
    ("--name", str, "human-readable name sent at registration"),
    ("--tags", str, "comma-separated tags sent at registration"),
    (
        "--location",
        str,
        "LAT,LON in decimal degrees, sent at registration; or gpsd[:HOST:PORT] to report"
        " the device's position from gpsd (default 127.0.0.1:2947)",
    ),
    ("--gps-min-move-m", float, "with gpsd: report a fix that moved this far (default 25)"),
    ("--gps-interval-s", float, "with gpsd: report a fix at least this often (default 300)"),
    ("--transport", str, "link to the manager: zmq (default) or http (outbound HTTP polling)"),
    ("--proxy", str, "socks5h://HOST:PORT or http://HOST:PORT (only with --transport http)"),
    (
        "--connectivity-hosts",
        str,
        "HOST:PORT,... that must be reachable before a payload is fetched (seed 000; a fetch"
        " waits while one is not)",
    ),
    (
        "--trust-anchor",
        Path,
        "trust anchors of signed tasks: the manager's ca.pem, ed25519:<base64> CA keys or"
        " sha256:<hex> CA fingerprints (without it every task is declined)",
    ),
    ("--tls-ca", Path, "PEM certificate(s) trusted for an https:// manager (only these)"),
    (
        "--terminal",
        str,
        "remote terminal: off, sandboxed (default: the sandbox user) or root; commands must"
        " be signed by an operator unless --insecure-lab",
    ),
    (
        "--on-revoked",
        str,
        "a running deployment whose signer was revoked: keep (default; reported) or stop",
    ),
    ("--log-level", str, "DEBUG, INFO (default), WARNING or ERROR"),
    ("--log-format", str, "text (default) or json: one JSON object per line"),
    ("--heartbeat-s", float, "heartbeat interval until the manager sets one"),
    ("--health-interval-s", float, "seconds between health reports (default 30)"),
    ("--log-batch-s", float, "seconds between log batches (default 2)"),
    ("--resend-s", float, "seconds before an unanswered message is sent again (default 10)"),
    ("--stop-grace-s", float, "seconds between SIGTERM and SIGKILL (default 5)"),
    ("--install-timeout-s", float, "limit of one install/build command (default 3600)"),
    ("--max-data-bytes", str, "cap on what the data dir may hold (e.g. 50M); default: disk"),
    (
        "--disk-margin-bytes",
        str,
        "free space kept when accepting a task (default: 10%% of the disk, <= 256M)",
    ),
    (
        "--low-disk-bytes",
        str,
        "below this free space fetching pauses (default: 5%% of the disk, <= 128M)",
    ),
    ("--chunk-window", int, "chunk requests in flight per transfer (default 4)"),
    ("--reconnect-ivl-s", float, "first reconnect delay (default 0.5)"),
    ("--reconnect-ivl-max-s", float, "longest reconnect delay (default 30)"),
    ("--max-processes", int, "ceiling of sandbox.limits.processes (default 256; 0: none)"),
    ("--max-memory-bytes", str, "ceiling of sandbox.limits.memoryBytes (default 512M; 0: none)"),
    ("--max-file-size-bytes", str, "ceiling of sandbox.limits.fileSizeBytes (default 1G)"),
    ("--max-cpu-s", int, "ceiling of sandbox.limits.cpuSeconds (default 0: none)"),
    ("--max-open-files", int, "ceiling of sandbox.limits.openFiles (default 0: none)"),
]
#: Repeatable options (the environment variable holds a comma-separated list).
_GRANTS: list[tuple[str, str]] = [
    ("--allow-device", "a device node tasks may ask for in sandbox.devices"),
    (
        "--allow-path",
        "DIR[:rw]: a host dir tasks may ask for in sandbox.paths (read-only unless :rw)",
    ),
    ("--allow-group", "a group tasks may ask for in sandbox.groups (e.g. video, dialout)"),
]
_SIZES = (
    "max_data_bytes",
    "disk_margin_bytes",
    "low_disk_bytes",
    "max_memory_bytes",
    "max_file_size_bytes",
)
_PLAIN = (
    "heartbeat_s",
    "health_interval_s",
    "log_batch_s",
    "resend_s",
    "stop_grace_s",
    "install_timeout_s",
    "chunk_window",
    "reconnect_ivl_s",
    "reconnect_ivl_max_s",
    "max_processes",
    "max_cpu_s",
    "max_open_files",
    "gps_min_move_m",
    "gps_interval_s",
)


def env_name(option: str) -> str:
    """``--data-dir`` -> ``SWARMDEPLOY_AGENT_DATA_DIR``."""
    return ENV_PREFIX + option.removeprefix("--").replace("-", "_").upper()


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized like it but without :mod:`shutil`, which loads the bz2
    and lzma modules (about 0.3 MB resident for the agent's whole life)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_columns() - 2)


def terminal_columns(environ: Mapping[str, str] | None = None) -> int:
    """Columns of the terminal as :func:`shutil.get_terminal_size` sees them: ``COLUMNS``,
    else the size of standard output, else 80."""
    text = (os.environ if environ is None else environ).get("COLUMNS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser; defaults come from ``environ`` (SWARMDEPLOY_AGENT_*)."""
    parser = argparse.ArgumentParser(
        prog="swarmdeploy agent",
        formatter_class=_HelpFormatter,
        description="swarmdeploy Deployment Agent. Every option can also be set with the"
        " environment variable SWARMDEPLOY_AGENT_<OPTION> (e.g. SWARMDEPLOY_AGENT_DATA_DIR).",
        epilog="To put the agent on a device or into an image: swarmdeploy agent"
        " install|uninstall|provision --help.",
    )
    for option, kind, text in _OPTIONS:
        env = env_name(option)
        parser.add_argument(option, type=kind, default=environ.get(env), help=f"{text} [{env}]")
    for option, text in _GRANTS:
        env = env_name(option)
        listed = [v.strip() for v in environ.get(env, "").split(",") if v.strip()]
        parser.add_argument(
            option, action="append", default=None, help=f"{text}; repeatable [{env}=A,B]"
        )
        parser.set_defaults(**{"env_" + option[2:].replace("-", "_"): listed})
    env = env_name("--insecure-lab")
    parser.add_argument(
        "--insecure-lab",
        action="store_const",
        const="1",
        default=environ.get(env),
        help="lab only: accept unsigned tasks when no trust anchor is given; reported to the"
        f" manager [{env}=1]",
    )
    return parser


def parse_flag(text: str | None, option: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case; unset: False)."""
    value = (text or "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{option}: {text!r} is not on/off, true/false, yes/no or 1/0")


def _connectivity_hosts(text: str | None) -> tuple[tuple[str, int], ...]:
    from swarmdeploy.agent.connectivity import parse_hosts

    try:
        return parse_hosts(text or "")
    except ValueError as exc:
        raise ConfigError(f"--connectivity-hosts: {exc}") from None


def settings_from_args(args: argparse.Namespace) -> AgentSettings:
    """Validate the parsed options once (ConfigError names the offending option)."""
    from swarmdeploy.agent.config import AgentSettings, parse_size, parse_tags

    if args.data_dir is None:
        raise ConfigError("--data-dir (or SWARMDEPLOY_AGENT_DATA_DIR) is required")
    values: dict[str, Any] = {
        "data_dir": Path(args.data_dir).absolute(),
        "manager_url": args.manager or None,
        "token": args.token or None,
        "target_id": args.id or None,
        "name": args.name or "",
        "tags": parse_tags(args.tags) if args.tags else (),
        **_location(args.location),
        "transport": args.transport or "zmq",
        "proxy": args.proxy or None,
        "connectivity_hosts": _connectivity_hosts(args.connectivity_hosts),
        "trust_anchor": args.trust_anchor,
        "insecure_lab": parse_flag(args.insecure_lab, "--insecure-lab"),
        "tls_ca": args.tls_ca,
        "terminal": (args.terminal or "sandboxed").strip().lower(),
        "on_revoked": (args.on_revoked or "keep").strip().lower(),
    }
    for key in _PLAIN:
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    for key in _SIZES:
        if getattr(args, key):
            values[key] = parse_size(getattr(args, key), "--" + key.replace("_", "-"))
    values.update(_grants(args))
    return AgentSettings(**values)


def _location(text: str | None) -> dict[str, Any]:
    """``--location``: a manual ``LAT,LON`` or a gpsd source (``gpsd[:HOST:PORT]``)."""
    from swarmdeploy.agent.config import parse_location
    from swarmdeploy.agent.gpsd import parse_gpsd

    if not text:
        return {}
    source = parse_gpsd(text)
    return {"gpsd": source} if source is not None else {"location": parse_location(text)}


def _grants(args: argparse.Namespace) -> dict[str, Any]:
    """``--allow-*`` from the command line, else from the environment (comma-separated)."""
    from swarmdeploy.agent.config import parse_path_grant

    def given(name: str) -> list[str]:
        listed: list[str] | None = getattr(args, name)
        return listed if listed is not None else getattr(args, "env_" + name)

    return {
        "allow_devices": tuple(given("allow_device")),
        "allow_paths": tuple(parse_path_grant(p) for p in given("allow_path")),
        "allow_groups": tuple(given("allow_group")),
    }


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; return the exit status (see the module doc)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in PROVISION_COMMANDS:  # not the daemon: no keep_lean()
        from swarmdeploy.agent.provision.cli import main as provision_main

        return provision_main(arguments, environ)
    keep_lean()
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(arguments)
    try:
        configure_logging(args.log_level or "INFO", args.log_format or "text")
    except ValueError as exc:
        print(f"swarmdeploy agent: --log-format: {exc}", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
        return run(settings)
    except AgentFatalError as exc:
        print(f"swarmdeploy agent: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:  # a file of the data dir that cannot be read or written
        logger.debug("start-up failed", exc_info=True)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"swarmdeploy agent: cannot start: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


#: Never loaded into the agent process (docs/performance.md, "Agent memory").
LEAN_BLOCKED = ("ssl", "_ssl", "_hashlib", "typing_extensions")


def keep_lean() -> None:
    """Keep modules the agent does not need out of its memory (:data:`LEAN_BLOCKED`).

    * OpenSSL (``ssl``, ``_ssl``, ``_hashlib``; about 7 MB of RSS): the long-lived agent
      process never needs TLS. The ZeroMQ link is secured by CURVE (libsodium, inside
      libzmq), signatures are checked with PyNaCl, digests use Python's built-in SHA-256,
      and registering with an ``https://`` manager happens in a short-lived child
      (:func:`~swarmdeploy.agent.registrator.register_in_child`, which lifts the block).
    * ``typing_extensions`` (about 0.3 MB): msgspec uses it only when it is there; the
      agent's types need nothing beyond :mod:`typing` on Python 3.11.

    Must run before :mod:`msgspec`, :mod:`hashlib` and :mod:`asyncio` are imported (they
    load these when they can); modules already loaded stay as they are, so calling it in a
    process that uses them (a test runner) changes nothing.
    """
    for name in LEAN_BLOCKED:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError


#: What the running agent keeps imported (the rest follows from these).
LONG_LIVED = (
    "asyncio",
    "swarmdeploy.agent.daemon",
    "swarmdeploy.agent.health",
    "swarmdeploy.agent.sdnotify",
    "swarmdeploy.transport.zmq_agent",
)
#: Kept as well with ``--transport http`` (PyNaCl's boxes: not loaded by a ZeroMQ agent).
LONG_LIVED_HTTP = ("swarmdeploy.transport.http_agent",)


def import_long_lived(http: bool = False) -> None:
    """Import :data:`LONG_LIVED` before any transient start-up work (anchor parsing, state,
    registration, sandbox probes): objects that live for good then sit together, and the
    start-up garbage is freed in whole blocks the allocator can give back. Measured: about
    0.8 MB less resident than importing them on the way (docs/performance.md)."""
    import importlib

    for name in (*LONG_LIVED, *(LONG_LIVED_HTTP if http else ())):
        importlib.import_module(name)


def run(settings: AgentSettings) -> int:
    """Harden the process, register if needed (in a child), then run the daemon (blocking).

    The order keeps the process lean (docs/performance.md; :func:`main` has called
    :func:`keep_lean` already): the modules the agent keeps are imported first
    (:func:`import_long_lived`), registration's HTTP and TLS modules load only in the
    child, and glibc keeps one malloc arena for all threads.
    """
    keep_lean()  # main() did already; run() may be called on its own
    import_long_lived(http=settings.transport == "http")
    import asyncio

    from swarmdeploy.agent.config import manager_host
    from swarmdeploy.agent.daemon import Daemon
    from swarmdeploy.agent.hardening import check_data_dir, harden_process, limit_malloc_arenas
    from swarmdeploy.agent.registrator import ensure_registered, register_in_child
    from swarmdeploy.agent.sdnotify import Notifier
    from swarmdeploy.agent.trust import load_anchor_file, make_verifier
    from swarmdeploy.datalock import DataDirInUse, lock_data_dir

    harden_process()
    limit_malloc_arenas()
    check_data_dir(settings.data_dir)
    try:
        lock_data_dir(settings.data_dir, "swarmdeploy agent")  # held until the process ends
    except DataDirInUse as exc:
        raise ConfigError(str(exc)) from None
    anchors = load_anchor_file(settings.trust_anchor)
    if register_in_child(settings, anchors):  # before any thread exists: it forks
        settings = dataclasses.replace(settings, token=None)  # spent: not "given again"
    state, identity = ensure_registered(settings, anchors)  # registered now: no network
    assert state.registration is not None
    host = manager_host(settings.manager_url or state.registration.manager_url)
    daemon = Daemon(
        settings,
        make_transport(settings, state, identity, host),
        state=state,
        verifier=make_verifier(settings, anchors, state.registration),
        notifier=Notifier.from_env(),
        manager=probe_target(
            settings,
            settings.manager_url or state.registration.manager_url,
            state.registration.sub_port,
        ),
    )
    asyncio.run(_serve(daemon))
    if daemon.reenrol_needed:  # a fresh process enrols with the token (it forks: no threads)
        raise RegistrationError(
            f"the manager refused the key of target {state.agent_id} (deleted); the next start"
            " enrols a new identity with the given token",
            retryable=True,
        )
    return 0


def probe_target(settings: AgentSettings, manager_url: str, zmq_port: int) -> tuple[str, int]:
    """Where the health loop's connectivity check connects while the link is down: the
    manager's ZeroMQ port, its HTTP port for ``--transport http``, or the proxy itself with
    ``--proxy`` (the manager's name is then the proxy's to resolve: no local DNS lookup)."""
    from urllib.parse import urlsplit

    url = urlsplit(manager_url)
    if settings.transport != "http":
        return url.hostname or "", zmq_port
    if settings.proxy is not None:
        proxy = urlsplit(settings.proxy)
        return proxy.hostname or "", proxy.port or 1080
    return url.hostname or "", url.port or 80


async def _serve(daemon: Daemon) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_shutdown)
    await daemon.run()


def make_transport(
    settings: AgentSettings, state: AgentState, identity: Identity, host: str
) -> AgentTransport:
    """The link to the registered manager, ZeroMQ or HTTP polling (imported here: tests use
    other links)."""
    from swarmdeploy.transport.base import AgentLinkConfig
    from swarmdeploy.transport.errors import TransportConfigError
    from swarmdeploy.transport.zmq_agent import ZmqAgentTransport

    reg = state.registration
    assert reg is not None
    try:
        config = AgentLinkConfig(
            target_id=state.agent_id,
            keys=identity.curve,
            manager_public_key=reg.server_public_key,
            manager_host=host,
            zmq_sub_port=reg.sub_port,
            zmq_pub_port=reg.pub_port,
            reconnect_ivl_s=settings.reconnect_ivl_s,
            reconnect_ivl_max_s=settings.reconnect_ivl_max_s,
        )
        if settings.transport == "http":
            from swarmdeploy.transport.http_agent import HttpAgentTransport

            url = settings.manager_url or reg.manager_url
            return HttpAgentTransport(config, manager_url=url, proxy=settings.proxy)
    except TransportConfigError as exc:
        raise ConfigError(f"cannot configure the link to the manager: {exc}") from None
    return ZmqAgentTransport(config)


if __name__ == "__main__":
    sys.exit(main())
