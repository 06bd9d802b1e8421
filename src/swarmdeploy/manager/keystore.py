"""The manager's key material in its data directory, created on first start.

=================  ======  ==========================================================
file               mode    content
=================  ======  ==========================================================
``curve.key``      0600    the manager's CurveZMQ key pair (ZPL, ``crypto.curve``)
``ca.key``         0600    the CA's Ed25519 private key (PKCS#8 PEM)
``ca.pem``         0644    the CA certificate -- agents' trust anchor
``secret.key``     0600    32 random bytes (hex) keying the hashes of tokens and API keys
``admin.key``      0600    the generated bootstrap admin key (unless configured)
=================  ======  ==========================================================

Files are written to a temporary name and linked into place without overwriting, so two
processes starting at once cannot end up with different keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto import curve, tokens
from swarmdeploy.crypto.errors import CryptoError

log = logging.getLogger(__name__)


class KeystoreError(RuntimeError):
    """The data directory holds unusable key material (the manager must not start)."""


@dataclasses.dataclass(frozen=True)
class ManagerKeys:
    """Everything secret the manager needs at run time."""

    curve: curve.CurveKeyPair
    ca: ca_mod.CertificateAuthority
    secret: bytes = dataclasses.field(repr=False)


def prepare_data_dir(path: Path) -> None:
    """Create the data directory (mode 0700) if needed; tighten it if it is wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o700)


def write_new_file(path: Path, data: bytes, *, mode: int) -> bool:
    """Create ``path`` with ``data`` and ``mode`` unless it exists; returns whether it was
    created. The content appears atomically (temporary file + ``link``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_private(path: Path) -> bytes:
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    return path.read_bytes()


def _load_curve(data_dir: Path) -> curve.CurveKeyPair:
    path = data_dir / "curve.key"
    if not path.exists():
        write_new_file(path, curve.encode_keyfile(curve.generate_keypair()).encode(), mode=0o600)
        log.info("generated the manager's CurveZMQ key pair in %s", path)
    pair = curve.decode_keyfile(_read_private(path).decode("ascii", "replace"))
    if not pair.secret:
        raise KeystoreError(f"{path} has no secret key")
    return pair


def _load_ca(data_dir: Path, now: dt.datetime) -> ca_mod.CertificateAuthority:
    key_path, cert_path = data_dir / "ca.key", data_dir / "ca.pem"
    if not key_path.exists():
        authority = ca_mod.create_ca(f"swarmdeploy CA {secrets.token_hex(4)}", now=now)
        if write_new_file(key_path, authority.key_pem(), mode=0o600):
            cert_path.unlink(missing_ok=True)
            write_new_file(cert_path, authority.cert_pem(), mode=0o644)
            log.info("generated the manager's certificate authority in %s", key_path)
    if not cert_path.exists():
        raise KeystoreError(f"{cert_path} is missing while {key_path} exists; restore it")
    return ca_mod.load_ca(_read_private(key_path), cert_path.read_bytes())


def _load_secret(data_dir: Path) -> bytes:
    path = data_dir / "secret.key"
    write_new_file(path, tokens.generate_secret().hex().encode(), mode=0o600)
    try:
        secret = bytes.fromhex(_read_private(path).decode("ascii").strip())
    except ValueError as exc:
        raise KeystoreError(f"{path} is not hex text") from exc
    if len(secret) < 16:
        raise KeystoreError(f"{path} holds fewer than 16 bytes")
    return secret


def load_or_create_keys(data_dir: Path, *, now: dt.datetime) -> ManagerKeys:
    """Load the key material from ``data_dir``, generating what is missing.

    Raises :class:`KeystoreError` if existing files are unusable (never overwrites them).
    """
    try:
        return ManagerKeys(
            curve=_load_curve(data_dir), ca=_load_ca(data_dir, now), secret=_load_secret(data_dir)
        )
    except (CryptoError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"unusable key material in {data_dir}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class AdminKey:
    """The bootstrap admin key and whether it was generated by this call (print it once)."""

    value: str = dataclasses.field(repr=False)
    generated: bool
    path: Path | None


def resolve_admin_key(data_dir: Path, configured: str | None) -> AdminKey:
    """The bootstrap admin key: ``configured`` (``SWARMDEPLOY_ADMIN_KEY``) if given, else the
    content of ``DATA_DIR/admin.key``, else a new random key written there (mode 0600)."""
    if configured:
        return AdminKey(configured, generated=False, path=None)
    path = data_dir / "admin.key"
    generated = write_new_file(path, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
    value = _read_private(path).decode("utf-8", "replace").strip()
    if len(value) < 16:
        raise KeystoreError(f"{path} must hold a key of at least 16 characters")
    return AdminKey(value, generated=generated, path=path)
