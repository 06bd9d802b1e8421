"""Errors raised by :mod:`swarmdeploy.crypto`.

``CryptoError``
 ├── ``InvalidKey``           a key is malformed (wrong encoding, length or point) (give up)
 ├── ``InvalidToken``         a token or API key does not have the expected form (give up)
 └── ``CertificateError``     a certificate or CA file cannot be parsed or does not verify
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by :mod:`swarmdeploy.crypto`."""


class InvalidKey(CryptoError):
    """A public or private key is malformed."""


class InvalidToken(CryptoError):
    """A registration token or API key is malformed."""


class CertificateError(CryptoError):
    """A certificate or key file is malformed or a certificate does not verify."""
