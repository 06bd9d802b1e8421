"""``swarmdeploy manager``: parse options (command line, then ``SWARMDEPLOY_<OPTION>``
environment variables), validate them once, prepare the data directory and serve the API with
uvicorn until SIGTERM/SIGINT.

``swarmdeploy manager --import-ca KEY_PEM CERT_PEM [--import-ca-passphrase-file FILE]
[--force]`` instead installs a deployment CA in the data directory and exits (start the
manager afterwards as usual); see ``docs/security.md``, "CA custody".
``swarmdeploy manager --encrypt-storage --migrate`` encrypts a plaintext data directory in
place and exits; see ``docs/storage.md``, "Encryption at rest".

Exit status: 0 after a clean shutdown (or import, or conversion), 2 for invalid options, for
a data directory whose encryption does not fit them (a wrong storage key among them) and for
every start-up failure (one line on stderr, no traceback: ``manager.startup``), 1 if the import
or a conversion failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import logging
import os
import resource
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from swarmdeploy.datalock import DataDirInUse, lock_data_dir
from swarmdeploy.logformat import configure as configure_logging
from swarmdeploy.manager import logredact, storage_conversion
from swarmdeploy.manager import storage_encryption as encryption
from swarmdeploy.manager.app import create_app
from swarmdeploy.manager.httpguard import guarded_protocol
from swarmdeploy.manager.keystore import (
    KeystoreError,
    import_ca,
    prepare_data_dir,
    read_passphrase_file,
    resolve_admin_key,
)
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.settings import Settings, SettingsError, load_settings, parse_role_map
from swarmdeploy.manager.startup import StartError, StartupFailure, check_tls, describe, listen
from swarmdeploy.manager.storage_encryption import StorageEncryptionError
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import StorageError

if TYPE_CHECKING:
    from swarmdeploy.transport.http_manager import HttpManagerTransport

ENV_PREFIX = "SWARMDEPLOY_"
DEFAULT_DATA_DIR = "swarmdeploy-data"
_FLAGS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def parse_flag(text: str) -> bool:
    """``on/off``, ``true/false``, ``yes/no`` or ``1/0`` (any case); ``ValueError`` else."""
    try:
        return _FLAGS[text.strip().lower()]
    except KeyError:
        raise ValueError("expected on/off, true/false, yes/no or 1/0") from None


#: (option, settings field, converter, help). Each option also reads SWARMDEPLOY_<OPTION>.
OPTIONS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("data-dir", "data_dir", Path, f"data directory (default ./{DEFAULT_DATA_DIR})"),
    ("database", "database", str, "database URL (default: SQLite file DATA_DIR/swarmdeploy.db)"),
    ("http-port", "http_port", int, "REST/WebSocket port (default 8080)"),
    ("zmq-pub-port", "zmq_pub_port", int, "agent-facing ZeroMQ port (default 5556)"),
    ("zmq-sub-port", "zmq_sub_port", int, "agent-facing ZeroMQ port (default 5557)"),
    ("bind", "bind", str, "address to listen on (default 127.0.0.1)"),
    ("token-expiry", "token_expiry_s", int, "registration token lifetime, s (default 7 days)"),
    ("log-max-age", "log_max_age_s", int, "delete logs older than this, s; 0 keeps all"),
    ("log-max-rows", "log_max_rows", int, "keep at most this many log lines; 0: no limit"),
    ("log-retention-interval", "log_retention_interval_s", float, "retention period, s"),
    (
        "health-sample",
        "health_sample_s",
        float,
        "health history: one sample per target every, s (300)",
    ),
    ("health-history", "health_history_s", float, "health history kept, s (1 day)"),
    ("registration-rate", "registration_rate_per_min", float, "registrations/min per address"),
    ("registration-burst", "registration_burst", int, "registrations at once per address (10)"),
    (
        "registration-global-rate",
        "registration_global_rate_per_min",
        float,
        "registrations/min from all addresses together (600)",
    ),
    ("max-body-bytes", "max_body_bytes", int, "largest request body (default 1 MiB)"),
    ("max-task-body-bytes", "max_task_body_bytes", int, "largest task body (default 64 MiB)"),
    (
        "max-yaml-body-bytes",
        "max_yaml_body_bytes",
        int,
        "largest YAML task descriptor (default 8 MiB; JSON or multipart for larger)",
    ),
    (
        "max-descriptor-elements",
        "max_descriptor_elements",
        int,
        "most list/mapping entries in a task descriptor (default 20000)",
    ),
    ("event-queue-size", "event_queue_size", int, "events queued per /events client (1000)"),
    (
        "event-queue-bytes",
        "event_queue_bytes",
        int,
        "bytes of events queued per /events client; a client further behind is dropped (16 MiB)",
    ),
    ("agent-link", "agent_link", parse_flag, "serve agents over ZeroMQ (default on)"),
    (
        "wire-compression",
        "wire_compression",
        parse_flag,
        "compress large agent messages for agents that offer it (default on)",
    ),
    ("gui", "gui", parse_flag, "serve the web GUI at /ui (default on; --no-gui: off)"),
    ("map-tiles", "map_tiles", str, "GUI map tiles, e.g. https://tiles.example/{z}/{x}/{y}.png"),
    ("map-attribution", "map_attribution", str, "the attribution the tile server asks for"),
    ("heartbeat-interval", "heartbeat_interval_s", float, "agent heartbeat interval, s (15)"),
    ("online-timeout", "online_timeout_s", float, "online if heard within, s (3 x heartbeat)"),
    (
        "terminal-expiry",
        "terminal_expiry_s",
        float,
        "terminal commands for offline targets expire after, s (60)",
    ),
    ("oidc-issuer", "oidc_issuer", str, "accept JWTs of this OpenID Connect issuer"),
    ("oidc-jwks-url", "oidc_jwks_url", str, "the issuer's JWKS URL"),
    ("oidc-audience", "oidc_audience", str, "required JWT audience"),
    ("oidc-role-claim", "oidc_role_claim", str, "claim holding roles (default roles)"),
    ("oidc-role-map", "oidc_role_map", parse_role_map, "VALUE=ROLE,... claim value to role"),
    ("oidc-client-id", "oidc_client_id", str, "GUI sign-in with SSO: the client id at the issuer"),
    ("oidc-authorize-url", "oidc_authorize_url", str, "GUI sign-in with SSO: authorization URL"),
    ("oidc-token-url", "oidc_token_url", str, "GUI sign-in with SSO: token URL"),
    ("header-timeout", "header_timeout_s", float, "HTTP request line + headers within, s (10)"),
    ("body-timeout", "body_timeout_s", float, "HTTP body: some bytes at least every, s (30)"),
    (
        "keep-alive-timeout",
        "keep_alive_timeout_s",
        float,
        "idle HTTP connections closed after, s (5)",
    ),
    (
        "max-connections",
        "max_connections",
        int,
        "open HTTP connections at most (1000; at most half the open-file limit)",
    ),
    ("log-level", "log_level", str.upper, "DEBUG, INFO, WARNING or ERROR"),
    ("log-format", "log_format", str.lower, "text (default) or json: one JSON object per line"),
    ("tls-cert", "tls_cert", Path, "serve HTTPS: PEM certificate (chain); needs --tls-key"),
    ("tls-key", "tls_key", Path, "PEM private key of --tls-cert"),
    (
        "forwarded-allow-ips",
        "forwarded_allow_ips",
        str,
        "reverse proxies (comma-separated addresses) whose X-Forwarded-For is trusted",
    ),
    (
        "ca-passphrase-file",
        "ca_passphrase_file",
        Path,
        "file holding the passphrase that encrypts DATA_DIR/ca.key (default: a key derived "
        "from DATA_DIR/secret.key)",
    ),
    (
        "encrypt-storage",
        "encrypt_storage",
        parse_flag,
        "encrypt the SQLite database (SQLCipher) and the blobs at rest (default off)",
    ),
    (
        "storage-passphrase-file",
        "storage_passphrase_file",
        Path,
        "file holding the passphrase of the storage key (default: a key derived from "
        "DATA_DIR/secret.key)",
    ),
]


#: Options that can be given without a value (meaning on).
_SWITCHES = frozenset({"encrypt_storage"})


@dataclasses.dataclass(frozen=True)
class CaImportRequest:
    """``--import-ca KEY_PEM CERT_PEM``: the files, the passphrase file of an encrypted
    ``KEY_PEM`` and whether another CA may be replaced."""

    key_file: Path
    cert_file: Path
    passphrase_file: Path | None
    force: bool


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM/SIGINT after its graceful shutdown, so the process
    would die *by* the signal; the manager's contract is exit status 0 after a clean stop.
    Its graceful shutdown waits for open requests: the HTTP agent link's parked long-polls
    are answered first (``drain``), or every stop would wait out the shutdown timeout."""

    def __init__(self, config: uvicorn.Config, http_link: HttpManagerTransport | None) -> None:
        super().__init__(config)
        self._http_link = http_link

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._http_link is not None:
            self._http_link.drain()
        await super().shutdown(sockets)


def env_name(option: str) -> str:
    """The environment variable of an option: ``http-port`` -> ``SWARMDEPLOY_HTTP_PORT``."""
    return ENV_PREFIX + option.upper().replace("-", "_")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarmdeploy manager",
        description="Run the swarmdeploy Deployment Manager. Every option can also be given as "
        "the environment variable SWARMDEPLOY_<OPTION> (e.g. SWARMDEPLOY_HTTP_PORT); "
        "SWARMDEPLOY_ADMIN_KEY sets the bootstrap admin key.",
    )
    for option, field, _, help_text in OPTIONS:
        # A switch may stand alone (--encrypt-storage) or take on/off like its variable.
        switch = {"nargs": "?", "const": "on"} if field in _SWITCHES else {}
        parser.add_argument(
            f"--{option}",
            dest=field,
            metavar=field.split("_")[0].upper(),
            help=help_text,
            **switch,  # type: ignore[arg-type]
        )
    parser.add_argument(
        "--no-gui", dest="gui", action="store_const", const="off", help="do not serve the web GUI"
    )
    ca = parser.add_argument_group("deployment CA import (then exit; no environment variables)")
    ca.add_argument(
        "--import-ca",
        nargs=2,
        metavar=("KEY_PEM", "CERT_PEM"),
        type=Path,
        help="install this CA (PKCS#8 Ed25519 key, self-signed CA certificate), then exit",
    )
    ca.add_argument(
        "--import-ca-passphrase-file",
        metavar="FILE",
        type=Path,
        help="passphrase of an encrypted KEY_PEM (as `swarmdeploy keys ca-export` writes)",
    )
    ca.add_argument(
        "--force", action="store_true", help="with --import-ca: replace another CA (kept)"
    )
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="with --encrypt-storage: encrypt a plaintext data directory in place (after a "
        "backup), then exit",
    )
    return parser


def parse_command(
    argv: list[str], environ: Mapping[str, str]
) -> tuple[dict[str, Any], CaImportRequest | None]:
    """Settings values from ``argv`` with environment fallbacks, and the CA import asked
    for (if any). Raises :class:`SettingsError` for a value that cannot be converted or an
    import option without ``--import-ca``."""
    args = vars(_parser().parse_args(argv))
    request = _import_request(args)
    migrate = args.pop("migrate")
    values: dict[str, Any] = {"admin_key": environ.get(ENV_PREFIX + "ADMIN_KEY") or None}
    for option, field, convert, _ in OPTIONS:
        raw = args[field] if args[field] is not None else environ.get(env_name(option))
        if raw is None or raw == "":
            continue
        try:
            values[field] = convert(raw)
        except ValueError as exc:
            raise SettingsError(f"{field}: invalid value {raw!r} ({exc})") from None
    values.setdefault("data_dir", Path(DEFAULT_DATA_DIR))
    values.setdefault("agent_link", True)  # the real manager serves agents
    values.setdefault("gui", True)
    if migrate:
        if not values.get("encrypt_storage"):
            raise SettingsError("--migrate needs --encrypt-storage")
        values["migrate"] = True
    return values, request


def _import_request(args: dict[str, Any]) -> CaImportRequest | None:
    files, passphrase_file, force = (
        args.pop("import_ca"),
        args.pop("import_ca_passphrase_file"),
        args.pop("force"),
    )
    if files is None:
        if passphrase_file is not None or force:
            raise SettingsError("--import-ca-passphrase-file and --force need --import-ca")
        return None
    return CaImportRequest(files[0], files[1], passphrase_file, force)


def parse_options(argv: list[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings values from ``argv`` with environment fallbacks. Raises
    :class:`SettingsError` for a value that cannot be converted."""
    return parse_command(argv, environ)[0]


def run_import(settings: Settings, request: CaImportRequest) -> int:
    """Install the CA of ``request`` in ``settings.data_dir`` (``ca.key`` encrypted as the
    manager will read it); print what happened. Returns 0, or 1 with the reason on stderr."""
    try:
        passphrase = (
            read_passphrase_file(request.passphrase_file) if request.passphrase_file else None
        )
        result = import_ca(
            settings.data_dir,
            request.key_file.read_bytes(),
            request.cert_file.read_bytes(),
            now=dt.datetime.now(dt.UTC),
            key_passphrase=passphrase,
            force=request.force,
            ca_passphrase_file=settings.ca_passphrase_file,
        )
    except (KeystoreError, OSError) as exc:
        print(f"swarmdeploy manager: {exc}", file=sys.stderr)
        return 1
    state = "was already the CA; ca.key re-encrypted" if result.already_current else "imported"
    print(f"deployment CA {result.fingerprint} {state} in {settings.data_dir}", flush=True)
    for path in result.set_aside:
        print(f"the replaced CA is kept in {path}", flush=True)
    return 0


def _stores(settings: Settings) -> tuple[Storage, BlobStore]:
    """Storage and blob store, encrypted with ``--encrypt-storage`` (docs/storage.md).
    Raises :class:`StorageEncryptionError` when the data directory does not fit."""
    layout = encryption.layout_of(settings.data_dir, settings.database_url)
    if not settings.encrypt_storage:
        encryption.check_plain(layout)
        return encryption.open_stores(layout, settings.database_url, None)
    keys = encryption.open_keys(layout, settings.storage_passphrase_file)
    return encryption.open_stores(layout, settings.database_url, keys)


def run_migration(settings: Settings) -> int:
    """``--encrypt-storage --migrate``: encrypt the data directory in place, print what
    was done; 0, or 2 with one line on stderr (e.g. a wrong key)."""
    layout = encryption.layout_of(settings.data_dir, settings.database_url)
    try:
        done = storage_conversion.convert(
            layout, settings.storage_passphrase_file, now=dt.datetime.now(dt.UTC)
        )
    except (StorageEncryptionError, StorageError, ValueError) as exc:
        print(f"swarmdeploy manager: cannot encrypt the data directory: {exc}", file=sys.stderr)
        return 2
    if done.backup is None:
        print(f"{settings.data_dir} is encrypted already; nothing to convert", flush=True)
        return 0
    what = "the database and " if done.database_converted else ""
    print(
        f"encrypted {what}{done.blobs_converted} blob(s) in {settings.data_dir}; the plaintext"
        f" backup is {done.backup} -- delete it once the manager runs with --encrypt-storage",
        flush=True,
    )
    return 0


def _announce_admin_key(settings: Settings) -> None:
    admin = resolve_admin_key(settings.data_dir, settings.admin_key)
    if admin.generated:
        print(
            "Generated the bootstrap admin key (shown only now; also stored in "
            f"{admin.path}, mode 0600):\n\n    {admin.value}\n\n"
            "Use it as 'Authorization: Bearer <key>' and create personal keys with "
            "POST /api_keys.",
            flush=True,
        )


def connection_cap(settings: Settings) -> int:
    """``max_connections``, but at most half the process's open-file limit (the other half
    stays for the database, blobs, and the agents' ZeroMQ connections)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.max_connections
    return max(1, min(settings.max_connections, soft // 2))


def server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """The uvicorn configuration: HTTPS when ``tls_cert``/``tls_key`` are set (docs/tls.md);
    client addresses (registration rate limit) from ``X-Forwarded-For`` only when the
    connection comes from one of ``forwarded_allow_ips``; the connection guards of
    ``manager.httpguard`` (header deadline, body timeout, connection cap)."""
    forwarded = settings.forwarded_allow_ips
    http = guarded_protocol(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=connection_cap(settings),
    )
    return uvicorn.Config(
        app,
        http=http,
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout_s)),
        host=settings.bind,
        port=settings.http_port,
        log_config=None,
        lifespan="on",
        proxy_headers=forwarded is not None,
        forwarded_allow_ips=forwarded or "",
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )


#: Adds the web GUI to the app (``swarmdeploy.entry`` passes one; the manager package never
#: imports the GUI, which is a client of the public API like the CLI).
GuiMount = Callable[[Any, Settings], None]


def main(argv: list[str] | None = None, mount_gui: GuiMount | None = None) -> int:
    """Run the manager until SIGTERM/SIGINT (or import a CA); returns the exit status.
    With ``settings.gui`` on, ``mount_gui(app, settings)`` adds the web GUI at ``/ui``."""
    try:
        values, ca_import = parse_command(list(argv or []), os.environ)
        migrate = values.pop("migrate", False)
        settings = load_settings(**values)
    except SettingsError as exc:
        problems = "; ".join(str(exc).splitlines())
        print(f"swarmdeploy manager: invalid configuration: {problems}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    logredact.install()  # ?access_token=KEY must not reach the access log
    if ca_import is not None:
        return run_import(settings, ca_import)
    try:
        prepared = _prepare(settings, mount_gui, migrate=migrate)
    except StartError as exc:
        print(f"swarmdeploy manager: {exc}", file=sys.stderr)
        return 2
    if isinstance(prepared, int):  # --migrate: the data dir was converted, nothing to serve
        return prepared
    app, sock = prepared
    failure = StartupFailure(lambda: getattr(app.state, "startup_error", None))
    logging.getLogger("uvicorn.error").addFilter(failure)
    server = _Server(server_config(settings, app), getattr(app.state, "http_link", None))
    freeze_startup_heap()
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits (status 3) when the lifespan fails: one line below
        if failure.error is None:
            raise
    finally:
        sock.close()
    if failure.error is not None:
        print(f"swarmdeploy manager: cannot start: {describe(failure.error)}", file=sys.stderr)
        return 2
    return 0 if server.started else 1


def freeze_startup_heap() -> None:
    """Hide what start-up built (modules, the app and its routes, the schemas: most of the
    heap, and it lives as long as the process) from the cyclic garbage collector, so that
    the collections which large answers set off walk only what requests and the agent
    link create (docs/performance.md "REST API at scale": a third of the manager's CPU per
    ``GET /targets?perPage=1000`` went to collections walking the start-up heap)."""
    gc.collect()
    gc.freeze()


def _prepare(
    settings: Settings, mount_gui: GuiMount | None, *, migrate: bool
) -> tuple[Any, socket.socket] | int:
    """Everything before uvicorn runs (``manager.startup``): the data dir and its lock, the
    TLS files, the (possibly encrypted) stores, the app and the HTTP socket. With
    ``migrate`` the data dir is converted to encrypted storage instead and the conversion's
    exit status returned. Raises :class:`StartError` (one line)."""
    where = settings.data_dir
    try:
        prepare_data_dir(where)
        lock_data_dir(where, "swarmdeploy manager")  # held until the end
        if migrate:
            return run_migration(settings)
        _announce_admin_key(settings)
    except DataDirInUse as exc:
        raise StartError(str(exc)) from None
    except StorageEncryptionError as exc:
        raise StartError(str(exc)) from None
    except (KeystoreError, OSError) as exc:
        raise StartError(f"cannot use the data dir {where}: {describe(exc)}") from None
    check_tls(settings.tls_cert, settings.tls_key)
    try:
        storage, blobs = _stores(settings)
        app = create_app(settings, storage=storage, blobs=blobs)
        if settings.gui and mount_gui is not None:
            mount_gui(app, settings)
    except StorageEncryptionError as exc:
        raise StartError(str(exc)) from None
    except (KeystoreError, OSError) as exc:
        raise StartError(f"cannot start: {describe(exc)}") from None
    return app, listen(settings.bind, settings.http_port)
