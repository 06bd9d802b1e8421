"""The manager's configuration: one frozen, typed object validated once at the entry point.

:func:`load_settings` builds it from plain values (command line and environment, see
``manager.main``) and raises :class:`SettingsError` with one readable line per bad value.
Units are in the names (``_s`` seconds, ``_bytes``). Nothing here reads the environment.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from swarmdeploy.storage.factory import normalize_url

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")

_DAY_S = 24 * 3600
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")


class SettingsError(ValueError):
    """The configuration is invalid; ``str()`` lists every problem, one per line."""


class Settings(BaseModel):
    """Validated manager configuration (immutable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path
    database: str = ""  # empty: SQLite file DATA_DIR/swarmdeploy.db
    http_port: int = Field(8080, ge=1, le=65535)
    zmq_pub_port: int = Field(5556, ge=1, le=65535)
    zmq_sub_port: int = Field(5557, ge=1, le=65535)
    bind: str = "127.0.0.1"
    admin_key: str | None = Field(None, repr=False, min_length=16, max_length=512)
    token_expiry_s: int = Field(7 * _DAY_S, ge=60, le=365 * _DAY_S)
    token_purge_interval_s: float = Field(3600.0, gt=0, le=_DAY_S)
    log_max_age_s: int = Field(30 * _DAY_S, ge=0)  # 0: no age limit
    log_max_rows: int = Field(5_000_000, ge=0)  # 0: no row limit
    log_retention_interval_s: float = Field(600.0, gt=0, le=_DAY_S)
    #: Health history (the GUI's charts): one sample per target this often, kept this long.
    health_sample_s: float = Field(300.0, ge=1, le=_DAY_S)
    health_history_s: float = Field(_DAY_S, ge=60, le=90 * _DAY_S)
    task_expiry_interval_s: float = Field(30.0, gt=0, le=3600)
    max_body_bytes: int = Field(1 << 20, ge=1024, le=1 << 30)
    max_task_body_bytes: int = Field(64 << 20, ge=1024, le=1 << 31)
    max_yaml_body_bytes: int = Field(8 << 20, ge=1024, le=1 << 31)
    max_descriptor_elements: int = Field(20_000, ge=100, le=10_000_000)
    registration_rate_per_min: float = Field(10.0, gt=0, le=10_000)
    registration_burst: int = Field(10, ge=1, le=10_000)
    registration_global_rate_per_min: float = Field(600.0, gt=0, le=1_000_000)
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    oidc_audience: str | None = None
    oidc_role_claim: str = Field("roles", min_length=1)
    oidc_role_map: dict[str, Role] = Field(default_factory=dict)
    #: The GUI's "Sign in with SSO" (authorization code flow with PKCE, a public client).
    oidc_client_id: str | None = Field(None, min_length=1, max_length=200)
    oidc_authorize_url: str | None = None
    oidc_token_url: str | None = None
    event_queue_size: int = Field(1000, ge=10, le=1_000_000)
    event_queue_bytes: int = Field(16 << 20, ge=64 << 10, le=1 << 30)
    #: An /events stream's credential is authenticated again this often (s).
    events_recheck_s: float = Field(30.0, gt=0, le=3600)
    dispatch_queue_size: int = Field(100, ge=1, le=100_000)
    agent_link: bool = False  # serve agents over ZeroMQ (``swarmdeploy manager`` turns it on)
    heartbeat_interval_s: float = Field(15.0, gt=0, le=3600)
    online_timeout_s: float | None = Field(None, gt=0)  # None: 3 x heartbeat_interval_s (§6.1)
    terminal_expiry_s: float = Field(60.0, gt=0, le=3600)
    max_upload_bytes: int = Field(4 << 30, ge=1024, le=1 << 40)
    shutdown_timeout_s: float = Field(10.0, gt=0, le=600)
    #: HTTP guards (``manager.httpguard``): request-head deadline, body idle timeout,
    #: idle keep-alive timeout and the cap on open connections.
    header_timeout_s: float = Field(10.0, gt=0, le=600)
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    keep_alive_timeout_s: float = Field(5.0, gt=0, le=600)
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (logformat.py)
    tls_cert: Path | None = None  # PEM certificate (chain) of the REST API; with tls_key
    tls_key: Path | None = None
    #: Proxy addresses whose X-Forwarded-For/-Proto are trusted (comma-separated); None: none.
    forwarded_allow_ips: str | None = Field(None, min_length=1)
    #: File holding the passphrase that encrypts DATA_DIR/ca.key; None: a secret.key-derived key.
    ca_passphrase_file: Path | None = None
    #: Encrypt the SQLite database (SQLCipher) and every blob at rest (docs/storage.md).
    encrypt_storage: bool = False
    #: File holding the passphrase of the storage key; None: a key derived from secret.key.
    storage_passphrase_file: Path | None = None
    #: Serve the operator web GUI at /ui (``swarmdeploy manager`` turns it on; --no-gui off).
    gui: bool = False
    #: Compress large agent-link messages when the agent offers it (docs/protocol.md §2.1).
    wire_compression: bool = True
    #: GUI map tiles: an http(s) URL template with {z}, {x}, {y}; None: country outlines only.
    map_tiles: str | None = Field(None, max_length=2000, pattern=r"^https?://\S*\{z\}\S*$")
    map_attribution: str = Field("", max_length=500)

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME_RE.match(value):
                raise ValueError("must be an IP address or host name") from None
        return value

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str) -> str:
        if value:
            normalize_url(value)  # raises ValueError naming the accepted forms
        return value

    @field_validator("tls_cert", "tls_key", "ca_passphrase_file", "storage_passphrase_file")
    @classmethod
    def _check_tls_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("oidc_issuer", "oidc_jwks_url", "oidc_authorize_url", "oidc_token_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        ports = {self.http_port, self.zmq_pub_port, self.zmq_sub_port}
        if len(ports) != 3:
            raise ValueError("http_port, zmq_pub_port and zmq_sub_port must all differ")
        oidc = (self.oidc_issuer, self.oidc_jwks_url, self.oidc_audience)
        if any(oidc) and not all(oidc):
            raise ValueError("OpenID Connect needs oidc_issuer, oidc_jwks_url and oidc_audience")
        sso = (self.oidc_client_id, self.oidc_authorize_url, self.oidc_token_url)
        if any(sso) and not (all(sso) and self.oidc_issuer):
            raise ValueError(
                "the GUI's SSO sign-in needs oidc_client_id, oidc_authorize_url and "
                "oidc_token_url, and the oidc_issuer settings that verify its tokens"
            )
        if self.max_task_body_bytes < self.max_body_bytes:
            raise ValueError("max_task_body_bytes must be at least max_body_bytes")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both tls_cert and tls_key")
        if self.storage_passphrase_file is not None and not self.encrypt_storage:
            raise ValueError("storage_passphrase_file needs encrypt_storage")
        return self

    @property
    def database_url(self) -> str:
        """The storage URL; the default is the SQLite file ``DATA_DIR/swarmdeploy.db``."""
        return self.database or f"sqlite+aiosqlite:///{self.data_dir / 'swarmdeploy.db'}"

    @property
    def online_timeout_ms(self) -> int:
        """A target is online while heard from within this time (docs/protocol.md §6.1)."""
        timeout_s = self.online_timeout_s or 3 * self.heartbeat_interval_s
        return int(timeout_s * 1000)

    @property
    def oidc_enabled(self) -> bool:
        """Whether bearer JWTs from an OpenID Connect issuer are accepted."""
        return self.oidc_issuer is not None


def parse_role_map(text: str) -> dict[str, str]:
    """Parse ``"claim-value=role,other=role"`` (the command-line form of ``oidc_role_map``)."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        value, sep, role = item.rpartition("=")
        if not sep or not value.strip():
            raise SettingsError(f"oidc_role_map: {item!r} is not VALUE=ROLE")
        result[value.strip()] = role.strip()
    return result


def load_settings(**values: Any) -> Settings:
    """Validate ``values`` into :class:`Settings`; ``None`` values mean "use the default".

    Raises :class:`SettingsError` naming every invalid option.
    """
    given = {key: value for key, value in values.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or "settings"
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("\n".join(lines)) from None
