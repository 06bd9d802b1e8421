"""Errors raised by the protocol layer.

``ProtocolError``
 ├── ``DescriptorError``   a task descriptor is invalid (carries the offending field path)
 ├── ``TransitionError``   a state change that the state table does not allow
 └── ``MessageError``      bytes that are not a valid wire message (carries a stable ``code``)
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error raised by :mod:`swarmdeploy.protocol`."""

    code = "protocol_error"


class DescriptorError(ProtocolError):
    """A task descriptor failed validation.

    ``path`` is a JSON-path-like location of the offending field (``$.deploy.run``) or ``$``
    for the document as a whole.
    """

    code = "invalid_descriptor"

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.message} (at {self.path})" if self.path != "$" else self.message


class TransitionError(ProtocolError):
    """A state transition that the table in :mod:`swarmdeploy.protocol.states` forbids."""

    code = "invalid_transition"


class MessageError(ProtocolError):
    """Bytes or a value that is not a valid wire message (``docs/protocol.md`` §2, §7).

    ``code`` is one of the stable error codes of ``docs/protocol.md`` §7 (``invalid_message``,
    ``too_large``, ``unsupported_version``, ...); the same code travels in ``error`` messages.
    The sender should not retry the same bytes.
    """

    code = "invalid_message"

    def __init__(self, message: str, code: str = "invalid_message") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
