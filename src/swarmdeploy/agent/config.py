"""The agent's settings: typed, frozen, validated once at the entry point and passed down.

``swarmdeploy agent`` builds one :class:`AgentSettings` from its options and
``SWARMDEPLOY_AGENT_*`` variables (:mod:`swarmdeploy.agent.main`); every other part of the
agent receives the values it needs from it. Invalid values raise :class:`ConfigError`, whose
message names the option, so the entry point can exit with one clear line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from swarmdeploy.agent.errors import ConfigError
from swarmdeploy.agent.limits import FIELDS as LIMIT_FIELDS
from swarmdeploy.agent.limits import LimitCeilings
from swarmdeploy.protocol.descriptor_common import GROUP_NAME_PATTERN
from swarmdeploy.protocol.messages import valid_name

#: Link implementations this agent version provides.
SUPPORTED_TRANSPORTS = ("zmq", "http")
#: ``--proxy`` schemes (HTTP transport only): SOCKS5 with remote names, HTTP CONNECT.
PROXY_SCHEMES = ("socks5h", "http")
#: ``--terminal``: refuse terminal commands, run them in the sandbox, or as the agent's user.
TERMINAL_POLICIES = ("off", "sandboxed", "root")
#: ``--on-revoked``: what happens to a running deployment whose signer was revoked.
ON_REVOKED_POLICIES = ("keep", "stop")
_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_GROUP = re.compile(GROUP_NAME_PATTERN)
_CEILINGS = LimitCeilings()


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything the agent is told at start. Seconds in ``*_s``, bytes in ``*_bytes``.

    ``manager_url`` may be None on later starts: the URL given at registration is used then.
    ``trust_anchor`` is the anchor file of signed tasks; without one the agent refuses every
    task unless ``insecure_lab``. ``tls_ca`` (PEM) is the only trust store for an
    ``https://`` manager at registration (default: the system's).
    ``max_data_bytes`` caps what the data dir may hold (tests and quotas) instead of the real
    disk; ``disk_margin_bytes`` is kept free when assessing a task; fetching pauses while less
    than ``low_disk_bytes`` are free. None (the default) scales them with the data dir's file
    system (:func:`~swarmdeploy.agent.resources.scaled_disk_bytes`): 10 % and 5 % of it, at
    most 256 MiB and 128 MiB, so a small device takes small tasks.
    ``allow_devices``, ``allow_paths`` ((path, writable) pairs) and ``allow_groups`` are what
    tasks may ask for in ``sandbox.devices/paths/groups``; ``max_*`` are the ceilings of
    their ``sandbox.limits`` (0: none) -- the device owner's policy, never the manager's
    (``swarmdeploy.agent.limits``).
    ``terminal`` and ``on_revoked`` are the device's own policies too (``docs/security.md``):
    the manager can read them, never widen them.
    """

    data_dir: Path
    manager_url: str | None = None
    token: str | None = None
    target_id: str | None = None
    name: str = ""
    tags: tuple[str, ...] = ()
    location: tuple[float, float] | None = None
    gpsd: tuple[str, int] | None = None
    gps_min_move_m: float = 25.0
    gps_interval_s: float = 300.0
    transport: str = "zmq"
    proxy: str | None = None
    connectivity_hosts: tuple[tuple[str, int], ...] = ()
    trust_anchor: Path | None = None
    insecure_lab: bool = False
    tls_ca: Path | None = None
    terminal: str = "sandboxed"
    on_revoked: str = "keep"
    heartbeat_s: float = 15.0
    health_interval_s: float = 30.0
    log_batch_s: float = 2.0
    resend_s: float = 10.0
    stop_grace_s: float = 5.0
    install_timeout_s: float = 3600.0
    max_data_bytes: int | None = None
    disk_margin_bytes: int | None = None
    low_disk_bytes: int | None = None
    chunk_window: int = 4
    reconnect_ivl_s: float = 0.5
    reconnect_ivl_max_s: float = 30.0
    allow_devices: tuple[str, ...] = ()
    allow_paths: tuple[tuple[str, bool], ...] = ()
    allow_groups: tuple[str, ...] = ()
    max_processes: int = _CEILINGS.processes
    max_memory_bytes: int = _CEILINGS.memory_bytes
    max_file_size_bytes: int = _CEILINGS.file_size_bytes
    max_cpu_s: int = _CEILINGS.cpu_s
    max_open_files: int = _CEILINGS.open_files

    def __post_init__(self) -> None:
        if self.manager_url is not None:
            manager_host(self.manager_url)  # validates
        if self.target_id is not None and not valid_name(self.target_id):
            raise ConfigError(
                f"--id {self.target_id!r} is not a valid id (letters, digits and ._:@-, at"
                " most 128 characters, starting with a letter or digit)"
            )
        for tag in self.tags:
            if not valid_name(tag):
                raise ConfigError(f"--tags: {tag!r} is not a valid tag")
        if self.token is not None and not 0 < len(self.token) <= 64:
            raise ConfigError("--token must be 1 to 64 characters")
        if len(self.name) > 200:
            raise ConfigError("--name must be at most 200 characters")
        if self.terminal not in TERMINAL_POLICIES:
            raise ConfigError(f"--terminal must be one of {', '.join(TERMINAL_POLICIES)}")
        if self.on_revoked not in ON_REVOKED_POLICIES:
            raise ConfigError(f"--on-revoked must be one of {', '.join(ON_REVOKED_POLICIES)}")
        self._check_transport()
        self._check_numbers()
        self._check_grants()

    def _check_grants(self) -> None:
        for device in self.allow_devices:
            check_host_path(device, "--allow-device")
        for path, _ in self.allow_paths:
            check_host_path(path, "--allow-path")
            data = PurePosixPath(self.data_dir)
            granted = PurePosixPath(path)
            if granted == data or granted in data.parents or data in granted.parents:
                raise ConfigError(
                    f"--allow-path {path!r} overlaps the agent's data dir {self.data_dir}"
                )
        for group in self.allow_groups:
            if not _GROUP.match(group):
                raise ConfigError(f"--allow-group {group!r} is not a group name")
        for ours, _, _, option in LIMIT_FIELDS:
            if getattr(self, "max_" + ours) < 0:
                raise ConfigError(f"{option} must not be negative (0: no ceiling)")

    @property
    def ceilings(self) -> LimitCeilings:
        """The limit ceilings of sandboxed commands."""
        return LimitCeilings(
            processes=self.max_processes,
            memory_bytes=self.max_memory_bytes,
            file_size_bytes=self.max_file_size_bytes,
            cpu_s=self.max_cpu_s,
            open_files=self.max_open_files,
        )

    def _check_transport(self) -> None:
        if self.transport not in SUPPORTED_TRANSPORTS:
            raise ConfigError(
                f"--transport {self.transport!r} is not available in this agent version;"
                f" supported: {', '.join(SUPPORTED_TRANSPORTS)}"
            )
        if self.transport == "zmq" and self.proxy is not None:
            raise ConfigError(
                "--proxy is not supported with --transport zmq (ZeroMQ links cannot go"
                " through a proxy); use --transport http or leave it unset"
            )
        if self.proxy is not None:
            check_proxy(self.proxy)
        if self.transport == "http" and self.manager_url is not None:
            if urlsplit(self.manager_url).scheme != "http":
                raise ConfigError(
                    "--transport http needs an http:// manager URL: every body is sealed end"
                    " to end (docs/adr/0013-http-link-security.md) and the agent keeps TLS out"
                    " of its memory"
                )

    def _check_numbers(self) -> None:
        positive = {
            "--heartbeat-s": self.heartbeat_s,
            "--health-interval-s": self.health_interval_s,
            "--log-batch-s": self.log_batch_s,
            "--resend-s": self.resend_s,
            "--install-timeout-s": self.install_timeout_s,
            "--reconnect-ivl-s": self.reconnect_ivl_s,
            "--reconnect-ivl-max-s": self.reconnect_ivl_max_s,
            "--gps-interval-s": self.gps_interval_s,
        }
        for option, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{option} must be a positive number of seconds")
        if not (math.isfinite(self.stop_grace_s) and self.stop_grace_s >= 0):
            raise ConfigError("--stop-grace-s must not be negative")
        if not (math.isfinite(self.gps_min_move_m) and self.gps_min_move_m >= 0):
            raise ConfigError("--gps-min-move-m must be a distance in metres, 0 or more")
        if self.reconnect_ivl_s > self.reconnect_ivl_max_s:
            raise ConfigError("--reconnect-ivl-s must not exceed --reconnect-ivl-max-s")
        if self.max_data_bytes is not None and self.max_data_bytes <= 0:
            raise ConfigError("--max-data-bytes must be positive")
        if min(self.disk_margin_bytes or 0, self.low_disk_bytes or 0) < 0:
            raise ConfigError("--disk-margin-bytes and --low-disk-bytes must not be negative")
        if not 1 <= self.chunk_window <= 64:
            raise ConfigError("--chunk-window must be between 1 and 64")

    @property
    def state_path(self) -> Path:
        """Where the persisted agent state lives."""
        return self.data_dir / "state.json"


def manager_host(url: str) -> str:
    """The host name of a manager URL (``http(s)://host[:port][/path]``); ConfigError if the
    URL is not one."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"--manager {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"--manager {url!r} must be an http:// or https:// URL with a host")
    return host


def check_proxy(url: str) -> None:
    """ConfigError unless ``url`` is ``socks5h://host:port`` or ``http://host:port``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--proxy {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname or port is None:
        raise ConfigError(
            f"--proxy {url!r} must be socks5h://HOST:PORT (names resolved by the proxy, e.g."
            " Tor) or http://HOST:PORT (CONNECT)"
        )


def parse_tags(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")`` (order kept, duplicates dropped)."""
    tags = (t.strip() for t in text.split(","))
    return tuple(dict.fromkeys(t for t in tags if t))


def parse_location(text: str) -> tuple[float, float]:
    """``"LAT,LON"`` in decimal degrees; ConfigError unless both are in range."""
    try:
        lat_text, lon_text = text.split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise ConfigError(f"--location {text!r} must be LAT,LON in decimal degrees") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ConfigError(f"--location {text!r} is out of range (lat -90..90, lon -180..180)")
    return lat, lon


def check_host_path(text: str, option: str) -> None:
    """ConfigError unless ``text`` is an absolute, normalised path below ``/``."""
    path = PurePosixPath(text)
    if not path.is_absolute() or ".." in path.parts or str(path) != text or text == "/":
        raise ConfigError(f"{option} {text!r} must be an absolute, normalised path below /")


def parse_path_grant(text: str) -> tuple[str, bool]:
    """``DIR`` -> (DIR, False); ``DIR:rw`` -> (DIR, True); ``DIR:ro`` -> (DIR, False)."""
    path, _, mode = text.rpartition(":") if text.endswith((":rw", ":ro")) else (text, "", "")
    check_host_path(path, "--allow-path")
    return path, mode == "rw"


def parse_size(text: str, option: str) -> int:
    """``"512"``, ``"64k"``, ``"10M"``, ``"2GiB"`` -> bytes (binary units)."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"{option} {text!r} is not a size (e.g. 512, 64k, 10M, 2G)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]
