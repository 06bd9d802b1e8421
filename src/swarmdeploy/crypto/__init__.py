"""Tokens, key handling, signing and certificates: pure functions over bytes and strings.

Nothing here reads or writes files or sockets; callers persist what these functions produce.

* :mod:`~swarmdeploy.crypto.tokens` -- registration tokens and API keys, keyed hashes.
* :mod:`~swarmdeploy.crypto.curve` -- CurveZMQ key pairs, Z85 validation, key-file text.
* :mod:`~swarmdeploy.crypto.ca` -- the manager's Ed25519 certificate authority (needs the
  ``cryptography`` package, i.e. the ``manager`` extra).
"""
