"""The agent's long-term keys: a CurveZMQ key pair and an Ed25519 identity key.

Both are created on the first start (issue 3: "generate CurveZMQ and Ed25519 identity keys,
files mode 0600 in the data dir") and never change afterwards; the manager knows the agent
by them. Files:

* ``curve.key`` -- ZPL key file with the CurveZMQ public and secret key (Z85), as written by
  :func:`swarmdeploy.crypto.curve.encode_keyfile`;
* ``identity.key`` -- the 32-byte Ed25519 seed, base64, one line.

PyNaCl is imported only to derive the identity's public key, which is needed at
registration only, so a registered agent's idle memory does not pay for it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from swarmdeploy.agent.errors import StateCorruptError
from swarmdeploy.agent.fsutil import atomic_write
from swarmdeploy.crypto.curve import CurveKeyPair, decode_keyfile, encode_keyfile, generate_keypair
from swarmdeploy.crypto.errors import InvalidKey

logger = logging.getLogger(__name__)

CURVE_KEY_FILE = "curve.key"
IDENTITY_KEY_FILE = "identity.key"


@dataclass(frozen=True, slots=True)
class Identity:
    """The agent's keys. ``identity_seed`` is the Ed25519 private key seed (32 bytes)."""

    curve: CurveKeyPair
    identity_seed: bytes = field(repr=False)

    def identity_public_b64(self) -> str:
        """The Ed25519 public key, base64 (what ``POST /rpc/targets`` expects)."""
        from nacl.signing import SigningKey

        raw = bytes(SigningKey(self.identity_seed).verify_key)
        return base64.b64encode(raw).decode("ascii")


def load_identity(data_dir: Path, *, create: bool) -> Identity:
    """Read the key files of ``data_dir``; with ``create``, make the missing ones (0600).

    Without ``create`` a missing or damaged key file raises :class:`StateCorruptError`: a
    registered agent whose keys are gone must be registered again.
    """
    curve_path = data_dir / CURVE_KEY_FILE
    seed_path = data_dir / IDENTITY_KEY_FILE
    curve = _read_curve(curve_path)
    seed = _read_seed(seed_path)
    if create and curve is None:
        curve = generate_keypair()
        atomic_write(curve_path, encode_keyfile(curve).encode("ascii"), 0o600)
        logger.info("generated the CurveZMQ key pair in %s", curve_path)
    if create and seed is None:
        seed = os.urandom(32)
        atomic_write(seed_path, base64.b64encode(seed) + b"\n", 0o600)
        logger.info("generated the Ed25519 identity key in %s", seed_path)
    if curve is None or seed is None:
        missing = curve_path if curve is None else seed_path
        raise StateCorruptError(
            f"key file {missing} is missing; the agent must be registered again"
            " (new data dir and a new token)"
        )
    return Identity(curve, seed)


def _read_curve(path: Path) -> CurveKeyPair | None:
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateCorruptError(f"cannot read key file {path}: {exc}") from exc
    try:
        pair = decode_keyfile(text)
    except InvalidKey as exc:
        raise StateCorruptError(f"key file {path} is damaged: {exc}") from exc
    if not pair.secret:
        raise StateCorruptError(f"key file {path} has no secret key")
    return pair


def _read_seed(path: Path) -> bytes | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateCorruptError(f"cannot read key file {path}: {exc}") from exc
    try:
        seed = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise StateCorruptError(f"key file {path} is damaged: not a base64 32-byte seed")
    return seed
