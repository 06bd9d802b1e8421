"""The manager's key material in its data directory, created on first start.

=========================  ======  ==================================================
file                       mode    content
=========================  ======  ==================================================
``curve.key``              0600    the manager's CurveZMQ key pair (ZPL, ``crypto.curve``)
``ca.key``                 0600    the CA's Ed25519 private key, encrypted (``crypto.keyenc``
                                   armor): under a key derived from ``secret.key``, or with
                                   Argon2id of the ``--ca-passphrase-file`` passphrase
``ca.pem``                 0644    the CA certificate -- agents' trust anchor (public)
``secret.key``             0600    32 random bytes (hex) keying the hashes of tokens and API
                                   keys and sealing the CA and operator keys
``admin.key``              0600    the generated bootstrap admin key (unless configured)
``ca.*.replaced-<time>``   as was  a CA replaced by ``--import-ca --force`` (never deleted)
=========================  ======  ==================================================

New files are written to a temporary name and linked into place without overwriting, so two
processes starting at once cannot end up with different keys. ``ca.key`` is only ever
replaced atomically (``rename``) by an equivalent one: a plaintext PKCS#8 key from an older
version is encrypted in place at start, a key sealed with ``secret.key`` is re-encrypted with
the passphrase once one is configured, and :func:`import_ca` installs an imported CA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from swarmdeploy.crypto import anchors, curve, keyenc, tokens
from swarmdeploy.crypto import ca as ca_mod
from swarmdeploy.crypto.errors import CertificateError, CryptoError, InvalidKey
from swarmdeploy.crypto.rejections import DecryptionFailed

log = logging.getLogger(__name__)

#: ``Key-Label`` of a ``ca.key`` sealed with a key derived from ``secret.key``.
CA_SEAL_LABEL = "secret.key/ca-key"
_CA_SEAL_CONTEXT = b"swarmdeploy ca-key sealing v1"
_PLAIN_PKCS8 = b"-----BEGIN PRIVATE KEY-----"


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


def _temp_copy(path: Path, data: bytes, mode: int) -> str:
    """A synced temporary file with ``data`` and ``mode`` next to ``path``; its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_new_file(path: Path, data: bytes, *, mode: int) -> bool:
    """Create ``path`` with ``data`` and ``mode`` unless it exists; returns whether it was
    created. The content appears atomically (temporary file + ``link``)."""
    tmp = _temp_copy(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


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


def _replace_file(path: Path, data: bytes, *, mode: int) -> None:
    """Atomically replace (or create) ``path`` with ``data`` (temporary file + rename)."""
    tmp = _temp_copy(path, data, mode)
    try:
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_passphrase_file(path: Path) -> str:
    """The passphrase in ``path``: its text without the final line break. Raises
    :class:`KeystoreError` if it cannot be read or is empty."""
    try:
        text = _read_private(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"cannot read the passphrase file {path}: {exc}") from None
    passphrase = text.removesuffix("\n").removesuffix("\r")
    if not passphrase:
        raise KeystoreError(f"the passphrase file {path} is empty")
    return passphrase


@dataclasses.dataclass(frozen=True)
class CaProtection:
    """How ``ca.key`` is encrypted at rest: with ``passphrase`` (Argon2id with ``kdf``) when
    one is given, else under :func:`ca_seal_key` of ``secret`` (``secret.key``)."""

    secret: bytes = dataclasses.field(repr=False)
    passphrase: str | None = dataclasses.field(default=None, repr=False)
    kdf: keyenc.KdfParams = keyenc.DEFAULT_KDF

    @property
    def how(self) -> str:
        """For log lines: what the key is encrypted with."""
        return "the CA passphrase" if self.passphrase else "a key derived from secret.key"

    def seal(self, authority: ca_mod.CertificateAuthority) -> bytes:
        """The armored, encrypted ``ca.key`` content of ``authority``."""
        comment = f"swarmdeploy CA {authority.key_fingerprint}"
        if self.passphrase:
            text = keyenc.encrypt_with_passphrase(
                authority.seed, self.passphrase, comment=comment, kdf=self.kdf
            )
        else:
            text = keyenc.encrypt_with_key(
                authority.seed, ca_seal_key(self.secret), key_label=CA_SEAL_LABEL, comment=comment
            )
        return text.encode("ascii")

    def unseal(self, path: Path, text: str) -> tuple[bytes, bool]:
        """The seed in ``path`` (content ``text``) and whether it should be re-encrypted
        (sealed with ``secret.key`` while a passphrase is configured). Raises
        :class:`KeystoreError` naming the file for anything that does not decrypt."""
        try:
            info = keyenc.describe(text)
        except InvalidKey as exc:
            raise KeystoreError(f"{path} is not an encrypted CA key: {exc}") from None
        try:
            if info.kdf == "argon2id":
                if not self.passphrase:
                    raise KeystoreError(
                        f"{path} is encrypted with a passphrase: start the manager with "
                        "--ca-passphrase-file FILE (SWARMDEPLOY_CA_PASSPHRASE_FILE)"
                    )
                return keyenc.decrypt_seed(text, passphrase=self.passphrase), False
            if info.key_label != CA_SEAL_LABEL:
                raise KeystoreError(f"{path} is sealed with an unknown key {info.key_label!r}")
            seed = keyenc.decrypt_seed(text, key=ca_seal_key(self.secret))
            return seed, self.passphrase is not None
        except InvalidKey as exc:
            raise KeystoreError(f"{path} is not a usable encrypted CA key: {exc}") from None
        except DecryptionFailed:
            if info.kdf == "argon2id":
                why = "wrong CA passphrase (--ca-passphrase-file) or a modified file"
            else:
                why = "it was sealed with another DATA_DIR/secret.key, or the file was modified"
            raise KeystoreError(f"cannot decrypt {path}: {why}") from None


def ca_seal_key(secret: bytes) -> bytes:
    """The 32-byte key sealing ``ca.key``, derived from the manager's secret (a different
    key from the one sealing operator keys)."""
    return hmac.new(secret, _CA_SEAL_CONTEXT, hashlib.sha256).digest()


def _load_ca(data_dir: Path, now: dt.datetime, guard: CaProtection) -> ca_mod.CertificateAuthority:
    key_path, cert_path = data_dir / "ca.key", data_dir / "ca.pem"
    if not key_path.exists():
        authority = ca_mod.create_ca(f"swarmdeploy CA {secrets.token_hex(4)}", now=now)
        if write_new_file(key_path, guard.seal(authority), mode=0o600):
            cert_path.unlink(missing_ok=True)
            write_new_file(cert_path, authority.cert_pem(), mode=0o644)
            log.info("generated the manager's certificate authority in %s", key_path)
    if not cert_path.exists():
        raise KeystoreError(f"{cert_path} is missing while {key_path} exists; restore it")
    data, cert_pem = _read_private(key_path), cert_path.read_bytes()
    try:
        if data.lstrip().startswith(_PLAIN_PKCS8):
            return _encrypt_plaintext(key_path, data, cert_pem, guard)
        seed, reseal = guard.unseal(key_path, data.decode("ascii", "replace"))
        authority = ca_mod.ca_from_seed(seed, cert_pem)
    except CertificateError as exc:
        raise KeystoreError(f"cannot load the CA from {key_path} and {cert_path}: {exc}") from None
    if reseal:
        _replace_file(key_path, guard.seal(authority), mode=0o600)
        log.warning("re-encrypted %s with %s", key_path, guard.how)
    return authority


def _encrypt_plaintext(
    key_path: Path, data: bytes, cert_pem: bytes, guard: CaProtection
) -> ca_mod.CertificateAuthority:
    authority = ca_mod.load_ca(data, cert_pem)  # raises (file untouched) if unusable
    _replace_file(key_path, guard.seal(authority), mode=0o600)
    log.warning(
        "%s held the CA private key in plaintext (an older version wrote it); encrypted it "
        "in place with %s. Copies of the old file (backups) still hold the plain key.",
        key_path,
        guard.how,
    )
    return authority


def load_secret(data_dir: Path) -> bytes:
    """The manager's secret (``DATA_DIR/secret.key``), created on first use. Raises
    :class:`KeystoreError` if the file is unusable."""
    return _load_secret(data_dir)


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


def _protection(secret: bytes, passphrase_file: Path | None, kdf: keyenc.KdfParams) -> CaProtection:
    passphrase = read_passphrase_file(passphrase_file) if passphrase_file else None
    return CaProtection(secret, passphrase, kdf)


def load_or_create_keys(
    data_dir: Path,
    *,
    now: dt.datetime,
    ca_passphrase_file: Path | None = None,
    ca_kdf: keyenc.KdfParams = keyenc.DEFAULT_KDF,
) -> ManagerKeys:
    """Load the key material from ``data_dir``, generating what is missing.

    ``ca.key`` is encrypted with the passphrase in ``ca_passphrase_file`` (Argon2id with
    ``ca_kdf``) if given, else under a key derived from ``secret.key``; a plaintext key of an
    older version is encrypted in place. Raises :class:`KeystoreError` if existing files are
    unusable or do not decrypt (it never overwrites them with other keys).
    """
    try:
        secret = _load_secret(data_dir)
        guard = _protection(secret, ca_passphrase_file, ca_kdf)
        return ManagerKeys(
            curve=_load_curve(data_dir), ca=_load_ca(data_dir, now, guard), secret=secret
        )
    except (CryptoError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"unusable key material in {data_dir}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class CaImport:
    """The outcome of :func:`import_ca`: the CA now in the data directory, whether it was
    there already (``ca.key`` re-encrypted only), and where a replaced CA was set aside."""

    fingerprint: str
    key_fingerprint: str
    already_current: bool
    set_aside: tuple[Path, ...]


def import_ca(
    data_dir: Path,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    now: dt.datetime,
    key_passphrase: str | None = None,
    force: bool = False,
    ca_passphrase_file: Path | None = None,
    ca_kdf: keyenc.KdfParams = keyenc.DEFAULT_KDF,
) -> CaImport:
    """Install the CA of ``key_pem`` (PKCS#8, encrypted with ``key_passphrase`` if given) and
    ``cert_pem`` in ``data_dir``; ``ca.key`` is encrypted as :func:`load_or_create_keys`
    does. The key must belong to the certificate, and the certificate pass
    :func:`~swarmdeploy.crypto.ca.check_ca_certificate` at ``now``.

    Importing the CA that is there already only re-encrypts ``ca.key``. Another CA is
    replaced only with ``force``; its files are kept (hard links
    ``ca.key.replaced-<time>-<random>``, ``ca.pem.replaced-…``). Raises
    :class:`KeystoreError` with the reason otherwise.
    """
    password = key_passphrase.encode("utf-8") if key_passphrase is not None else None
    try:
        authority = ca_mod.load_ca(key_pem, cert_pem, password=password)
        ca_mod.check_ca_certificate(authority.certificate, now=now)
    except CertificateError as exc:
        raise KeystoreError(f"cannot import the CA: {exc}") from None
    prepare_data_dir(data_dir)
    guard = _protection(_load_secret(data_dir), ca_passphrase_file, ca_kdf)
    key_path, cert_path = data_dir / "ca.key", data_dir / "ca.pem"
    current = _current_ca_fingerprint(cert_path)
    same = current == authority.fingerprint
    set_aside: tuple[Path, ...] = ()
    if not same and (current is not None or key_path.exists()):
        if not force:
            raise KeystoreError(
                f"{data_dir} holds another CA ({current or 'ca.key without ca.pem'}); agents "
                "provisioned with its ca.pem would refuse this manager and operator keys "
                "would need new certificates. Give --force to replace it (it is kept)."
            )
        set_aside = _set_aside((key_path, cert_path), now)
    _replace_file(cert_path, authority.cert_pem(), mode=0o644)
    _replace_file(key_path, guard.seal(authority), mode=0o600)
    log.warning(
        "imported the CA %s into %s (encrypted with %s)%s",
        authority.fingerprint,
        key_path,
        guard.how,
        f"; the previous CA is kept as {', '.join(p.name for p in set_aside)}" if set_aside else "",
    )
    return CaImport(authority.fingerprint, authority.key_fingerprint, same, set_aside)


def _current_ca_fingerprint(cert_path: Path) -> str | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return "an unreadable ca.pem"
    return anchors.certificate_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _set_aside(paths: tuple[Path, ...], now: dt.datetime) -> tuple[Path, ...]:
    """Hard-link each existing file to ``<name>.replaced-<time>-<random>`` (kept for good)."""
    suffix = f"replaced-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    pairs = [(p, p.with_name(f"{p.name}.{suffix}")) for p in paths if p.exists()]
    for path, target in pairs:
        os.link(path, target)
    return tuple(target for _, target in pairs)


@dataclasses.dataclass(frozen=True)
class AdminKey:
    """The bootstrap admin key and whether it was generated by this call (print it once)."""

    value: str = dataclasses.field(repr=False)
    generated: bool
    path: Path | None


def new_admin_key() -> str:
    """A random admin key (256 bits, URL-safe) that does not start with ``-``, so that
    ``--api-key KEY`` reads as an option value in every command-line parser."""
    while (key := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return key


def resolve_admin_key(data_dir: Path, configured: str | None) -> AdminKey:
    """The bootstrap admin key: ``configured`` (``SWARMDEPLOY_ADMIN_KEY``) if given, else the
    content of ``DATA_DIR/admin.key``, else a new random key written there (mode 0600)."""
    if configured:
        return AdminKey(configured, generated=False, path=None)
    path = data_dir / "admin.key"
    generated = write_new_file(path, (new_admin_key() + "\n").encode(), mode=0o600)
    value = _read_private(path).decode("utf-8", "replace").strip()
    if len(value) < 16:
        raise KeystoreError(f"{path} must hold a key of at least 16 characters")
    return AdminKey(value, generated=generated, path=path)
