"""Registration tokens, operator API keys and the keyed hashes under which both are stored.

Registration tokens (seed 003 §4.3, "Ephemeral key"): 12 lowercase hexadecimal digits from the
operating system's CSPRNG, written ``xxxx-xxxx-xxxx`` -- 48 bits of entropy. They are shown to
the operator once and stored only as ``HMAC-SHA256(server_secret, token)``: a leaked database
does not reveal tokens, and without the server secret the hashes cannot even be brute-forced
offline (the original stored unsalted SHA-512, which 48 bits do not survive).

API keys look like ``sdk_<id>_<secret>``: ``<id>`` (12 hex digits) is public and names the
stored record, ``<secret>`` (256 bits, URL-safe base64) is stored only as a keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from swarmdeploy.crypto.errors import InvalidToken

#: Bytes of entropy in a registration token (48 bits, 12 hex digits).
TOKEN_BYTES = 6
#: Length of the server secret used for keyed hashes.
SECRET_BYTES = 32
API_KEY_PREFIX = "sdk"

_TOKEN_RE = re.compile(r"^[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$")
_API_KEY_RE = re.compile(r"^sdk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def generate_secret() -> bytes:
    """A fresh random server secret for :func:`keyed_hash` (32 bytes)."""
    return secrets.token_bytes(SECRET_BYTES)


def keyed_hash(secret: bytes, value: str, *, purpose: str) -> bytes:
    """``HMAC-SHA256(secret, purpose || 0x00 || value)``.

    ``purpose`` separates the uses of one secret (tokens, API keys, ...) so that a hash of one
    kind can never stand in for another.
    """
    if len(secret) < 16:
        raise ValueError("the server secret must be at least 16 bytes")
    msg = purpose.encode() + b"\x00" + value.encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()


def generate_token() -> str:
    """A new registration token ``xxxx-xxxx-xxxx`` (48 bits from :mod:`secrets`)."""
    digits = secrets.token_bytes(TOKEN_BYTES).hex()
    return f"{digits[0:4]}-{digits[4:8]}-{digits[8:12]}"


def normalize_token(text: str) -> str:
    """The canonical form of a token typed by a person (trimmed, lower case).

    Raises :class:`InvalidToken` unless it has the form ``xxxx-xxxx-xxxx`` (hex digits).
    """
    token = text.strip().lower()
    if not _TOKEN_RE.match(token):
        raise InvalidToken("a registration token has the form xxxx-xxxx-xxxx (hex digits)")
    return token


def hash_token(secret: bytes, token: str) -> bytes:
    """The stored form of a registration token (normalised first; may raise InvalidToken)."""
    return keyed_hash(secret, normalize_token(token), purpose="registration-token")


def generate_api_key() -> tuple[str, str]:
    """A new API key: returns ``(key_id, plaintext)`` where ``plaintext`` embeds ``key_id``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{API_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(plaintext: str) -> str:
    """The public id inside an API key. Raises :class:`InvalidToken` if it is malformed."""
    match = _API_KEY_RE.match(plaintext)
    if not match:
        raise InvalidToken("not a swarmdeploy API key")
    return match.group(1)


def hash_api_key(secret: bytes, plaintext: str) -> bytes:
    """The stored form of an API key (or of any other bearer secret, e.g. the admin key)."""
    return keyed_hash(secret, plaintext, purpose="api-key")


def digests_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(a, b)
