"""CurveZMQ key pairs: generation, Z85 validation and the text of key files.

Keys travel and are stored as 40-character Z85 text (ZeroMQ RFC 32). Key files use the ZPL
certificate format that ``zmq.auth.load_certificate`` reads as well::

    #   swarmdeploy CurveZMQ key pair -- keep the secret key private
    metadata
    curve
        public-key = "<40 chars>"
        secret-key = "<40 chars>"

Writing the file (mode 0600) is the caller's job: this module does no I/O.
"""

from __future__ import annotations

import dataclasses
import re
import struct

import zmq
from zmq.utils import z85

from swarmdeploy.crypto.errors import InvalidKey

Z85_KEY_CHARS = 40
_KEY_LINE_RE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"\s*$')


@dataclasses.dataclass(frozen=True, slots=True)
class CurveKeyPair:
    """A CurveZMQ key pair as Z85 text. ``secret`` is ``""`` for a public-only certificate."""

    public: str
    secret: str = dataclasses.field(repr=False, default="")


def _decode_key(text: str, what: str) -> bytes:
    if len(text) != Z85_KEY_CHARS:
        raise InvalidKey(f"{what} must be {Z85_KEY_CHARS} characters of Z85 text")
    try:
        raw = z85.decode(text)
    except (ValueError, KeyError, struct.error) as exc:  # bad character, value >= 2**32
        raise InvalidKey(f"{what} is not valid Z85 text") from exc
    if len(raw) != 32 or z85.encode(raw).decode() != text:
        raise InvalidKey(f"{what} is not a canonical 32-byte Z85 key")
    if raw == bytes(32):
        raise InvalidKey(f"{what} must not be all zeros")
    return raw


def validate_public_key(text: str) -> str:
    """Return ``text`` if it is a CurveZMQ public key in Z85, else raise :class:`InvalidKey`."""
    _decode_key(text, "the CurveZMQ public key")
    return text


def generate_keypair() -> CurveKeyPair:
    """A fresh CurveZMQ key pair (libzmq/libsodium CSPRNG)."""
    public, secret = zmq.curve_keypair()
    return CurveKeyPair(public=public.decode("ascii"), secret=secret.decode("ascii"))


def public_from_secret(secret: str) -> str:
    """The public key that belongs to a Z85 secret key."""
    _decode_key(secret, "the CurveZMQ secret key")
    return str(zmq.curve_public(secret.encode("ascii")).decode("ascii"))


def encode_keyfile(pair: CurveKeyPair) -> str:
    """The text of a ZPL key file for ``pair`` (public-only when ``pair.secret`` is empty)."""
    lines = [
        "#   swarmdeploy CurveZMQ key pair -- keep the secret key private",
        "metadata",
        "curve",
        f'    public-key = "{pair.public}"',
    ]
    if pair.secret:
        lines.append(f'    secret-key = "{pair.secret}"')
    return "\n".join(lines) + "\n"


def decode_keyfile(text: str) -> CurveKeyPair:
    """Parse the text of a ZPL key file. The secret key, when present, must match the public
    key. Raises :class:`InvalidKey` for anything else."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY_LINE_RE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    if "public" not in found:
        raise InvalidKey("the key file has no public-key line")
    public = validate_public_key(found["public"])
    secret = found.get("secret", "")
    if secret and public_from_secret(secret) != public:
        raise InvalidKey("the key file's secret key does not belong to its public key")
    return CurveKeyPair(public=public, secret=secret)
